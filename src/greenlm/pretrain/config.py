"""Settings of a pre-training run (``greenlm pretrain``). Plain Python: imports without torch.

Defaults live here and nowhere else; the comment beside each field is what it means. ``validate()`` runs in
``__post_init__``, so a bad setting stops before anything is read or written.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from greenlm.common.numbers import check_numbers
from greenlm.common import GreenlmError
from greenlm.models.limits import check_sizes

OBJECTIVES = ("mlm", "electra")
MASKINGS = ("random", "whole-word", "content-words")
PRECISIONS = ("auto", "bf16", "fp32")
DEFAULT_MODEL = "tiny:layers=4,hidden=256,heads=4,ffn=1024,vocab=8000,positions=128"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # what a vocabulary trained here starts with
ELECTRA_DISC_WEIGHT = 50.0  # lambda of ELECTRA's loss, L_MLM + lambda * L_Disc (Clark et al. 2020, section 3)


@dataclass(frozen=True)
class PretrainConfig:
    corpus: str = "wikitext2"  # a UTF-8 text file (one paragraph per line), or "wikitext2" (train + valid files)
    model: str = DEFAULT_MODEL  # "tiny:...", "minilm" or a local HF folder (continued pre-training)
    objective: str = "mlm"  # "mlm" (BERT's masked LM) or "electra" (replaced-token detection)
    masking: str = "random"  # which tokens are masked: "random", "whole-word" or "content-words"
    mask_rate: float = 0.15  # masked tokens / non-special tokens of each block, the same for every masking
    generator_fraction: float = 0.25  # ELECTRA: generator width (hidden, heads, FFN) as a share of the discriminator's
    disc_weight: float = ELECTRA_DISC_WEIGHT  # ELECTRA: weight of the discriminator loss (the paper's lambda = 50)
    attention: str = "softmax"  # the encoder's self-attention: softmax | rfa | performer | t2r | abc, with options (abc:k=32)
    vocab_size: int | None = None  # train a WordPiece vocabulary of this size on the corpus (None: the model's own)
    max_length: int = 128  # tokens per block, [CLS] and [SEP] included; every block is full
    batch_size: int = 32  # blocks per optimizer step
    steps: int | None = None  # optimizer steps (default 1000 when no flops_budget is given)
    flops_budget: float | None = None  # training FLOPs (ELECTRA's convention) to spend; sets the steps instead
    learning_rate: float = 5e-4  # peak AdamW learning rate (after warm-up, then linear decay to 0)
    warmup_ratio: float = 0.1  # linear warm-up over this share of the steps
    weight_decay: float = 0.01  # AdamW weight decay (not on biases and LayerNorm weights)
    seed: int = 42  # initialisation, block order, masking, dropout
    precision: str = "auto"  # "auto": bf16 autocast on a bf16 GPU, fp32 on CPU
    checkpoint_every_steps: int = 200  # checkpoint every N steps (a killed run resumes from the last one)
    eval_blocks: int = 256  # validation blocks scored (masked-LM loss) at the end of each epoch and of training
    valid_fraction: float = 0.05  # share of a FILE corpus's blocks held out for validation (wikitext2 has its own)
    snapshot_fractions: tuple[float, ...] = ()  # also save the encoder at these shares of the steps (snapshots/step-N; 0: untrained)

    def __post_init__(self):
        check_numbers(self)
        checks = [
            (self.objective in OBJECTIVES, f"objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}"),
            (self.masking in MASKINGS, f"masking must be one of {', '.join(MASKINGS)}, got {self.masking!r}"),
            (_number(self.mask_rate) and 0 < self.mask_rate < 1,
             f"mask rate must be between 0 and 1 (exclusive), got {self.mask_rate!r}"),
            (_number(self.generator_fraction) and self.generator_fraction > 0,
             f"generator fraction must be > 0, got {self.generator_fraction!r}"),
            (_number(self.generator_fraction) and self.generator_fraction <= 1,
             f"generator fraction {self.generator_fraction} makes the generator larger than its discriminator;"
             " use at most 1 (the paper finds 1/4 to 1/2 best)"),
            (_number(self.disc_weight) and self.disc_weight > 0, "disc_weight must be > 0"),
            (self.vocab_size is None or (_whole(self.vocab_size) and self.vocab_size > len(SPECIAL_TOKENS)),
             f"vocabulary size {self.vocab_size} leaves no room for text: the {len(SPECIAL_TOKENS)} special tokens"
             f" {' '.join(SPECIAL_TOKENS)} come first; use more than {len(SPECIAL_TOKENS)} (e.g. 8000)"),
            (_whole(self.max_length) and self.max_length >= 4, f"max length must be at least 4 tokens, got {self.max_length!r}"),
            (_whole(self.batch_size) and self.batch_size >= 1, "batch size must be >= 1"),
            (self.steps is None or (_whole(self.steps) and self.steps >= 1), "steps must be >= 1"),
            (self.flops_budget is None or (_number(self.flops_budget) and self.flops_budget > 0),
             "the FLOPs budget must be > 0"),
            (self.steps is None or self.flops_budget is None, "give steps or a FLOPs budget, not both"),
            (_number(self.learning_rate) and self.learning_rate > 0, "learning rate must be > 0"),
            (_number(self.warmup_ratio) and 0 <= self.warmup_ratio < 1, "warmup ratio must be in [0, 1)"),
            (_number(self.weight_decay) and self.weight_decay >= 0, "weight decay must be >= 0"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
            (_whole(self.checkpoint_every_steps) and self.checkpoint_every_steps >= 1, "checkpoint_every_steps must be >= 1"),
            (_whole(self.eval_blocks) and self.eval_blocks >= 1, "eval_blocks must be >= 1"),
            (_number(self.valid_fraction) and 0 < self.valid_fraction < 1, "valid_fraction must be in (0, 1)"),
            (all(_number(f) and 0 <= f <= 1 for f in self.snapshot_fractions), "snapshot fractions must be in [0, 1]"),
        ]
        for ok, message in checks:
            if not ok:
                raise GreenlmError(f"pretrain setting: {message}")
        check_sizes("pretrain setting vocab_size", vocab=self.vocab_size)  # above this the tokenizer library aborts
        check_sizes("pretrain setting max_length", positions=self.max_length)
        from greenlm.models.attention_spec import AttentionSpec  # plain Python

        try:
            AttentionSpec.parse(self.attention)
        except GreenlmError as err:
            raise GreenlmError(f"pretrain setting: {err}") from None

    @property
    def default_steps(self) -> int:
        return 1000

    def to_dict(self) -> dict:
        out = asdict(self)
        out["snapshot_fractions"] = list(self.snapshot_fractions)
        return out


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
