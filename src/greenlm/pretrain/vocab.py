"""A WordPiece vocabulary of a chosen size, trained on the corpus (``--vocab-size``).

Why: the embedding matrix is vocab x hidden parameters and, with a tied MLM decoder, 2 x vocab x hidden FLOPs per
predicted token; a smaller vocabulary trained on the target domain saves both (Zhao et al. 2021, "Extremely small
BERT models from mixed-vocabulary training", shrink BERT's 30k vocabulary for the same reason).

Trained with the ``tokenizers`` library's WordPiece trainer (BERT normalisation: lower case, accents stripped;
BERT pre-tokenisation: white space and punctuation). Deterministic: the trainer breaks ties between equally frequent
merges by token id, and gives a word's ``##`` continuations ids in hash order; here the alphabet (the most frequent
characters, at most half the budget) and its ``##`` continuations get fixed ids up front, and the final ids are put
in a canonical order (the special tokens, then the pieces sorted). Same corpus and size, same vocabulary.
"""

from __future__ import annotations

from greenlm.common import GreenlmError
from greenlm.pretrain.config import SPECIAL_TOKENS


def train_wordpiece(lines: list[str], vocab_size: int, max_length: int):
    """A ``PreTrainedTokenizerFast`` (BERT layout: [CLS] A [SEP] B [SEP]) with at most ``vocab_size`` tokens."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size <= len(SPECIAL_TOKENS):
        raise GreenlmError(f"vocabulary size {vocab_size} leaves no room for text: the {len(SPECIAL_TOKENS)} special"
                           f" tokens come first; use more than {len(SPECIAL_TOKENS)}")
    room = vocab_size - len(SPECIAL_TOKENS)
    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    alphabet = _alphabet(lines, normalizer, pre_tokenizer, max(1, min(1000, room // 2)))
    # Every character and its ## continuation get their ids up front (passed as the trainer's special tokens), so
    # the trainer's ties between equally frequent merges, broken by id, no longer depend on hash order.
    fixed = [*alphabet, *(f"##{ch}" for ch in alphabet)]
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer, backend.pre_tokenizer = normalizer, pre_tokenizer
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=[*SPECIAL_TOKENS, *fixed],
                                        initial_alphabet=alphabet, limit_alphabet=len(alphabet), show_progress=False)
    backend.train_from_iterator(lines, trainer)
    pieces = sorted(t for t in backend.get_vocab() if t not in SPECIAL_TOKENS)[:room]
    vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *pieces])}  # canonical ids
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                   model_max_length=max_length)


def _alphabet(lines, normalizer, pre_tokenizer, limit: int) -> list[str]:
    """The ``limit`` most frequent characters of the corpus's words (ties: by character), sorted."""
    from collections import Counter

    chars: Counter[str] = Counter()
    for line in lines:
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line)):
            chars.update(word)
    return sorted(sorted(chars, key=lambda ch: (-chars[ch], ch))[:limit])
