"""What a content word is, offline and stated exactly (for ``--masking content-words``).

A word (what the tokenizer's pre-tokenizer splits off: BERT splits on white space and around punctuation) is a
content word when, lower-cased,
  1. it holds at least one letter (``str.isalpha`` of some character): punctuation, numbers and symbols such
     as ``,`` ``1990`` ``@-@`` are not;
  2. it is not an English stop word of scikit-learn's list ``ENGLISH_STOP_WORDS`` (318 words: "the", "of",
     "which", "would", ...; from the Glasgow Information Retrieval Group's list, maintained with scikit-learn);
  3. it is not a bracketed placeholder like WikiText's ``<unk>`` (a ``<``/``>`` pair around it in the text).
Everything else (nouns, verbs, adjectives, adverbs, names) counts as content. This is a stop-list test, not a
part-of-speech tagger: it needs no download and gives the same answer everywhere (the list is pinned by the
installed scikit-learn version, recorded in metrics.json).
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def stop_words() -> frozenset[str]:
    """scikit-learn's English stop words (lower case)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


def stop_list_source() -> str:
    """Where the stop list comes from, with its version (for metrics.json)."""
    import sklearn

    return f"sklearn.feature_extraction.text.ENGLISH_STOP_WORDS (scikit-learn {sklearn.__version__}, {len(stop_words())} words)"


def is_content_word(word: str) -> bool:
    """Rules 1 and 2 above for one word (rule 3 needs the word's surroundings: see ``content_flags``)."""
    lowered = word.lower()
    return any(ch.isalpha() for ch in lowered) and lowered not in stop_words()


def content_flags(text: str, spans: list[tuple[int, int]]) -> list[bool]:
    """One flag per word of ``text``, the words given as character spans ``(start, end)``, in order."""
    flags = []
    for start, end in spans:
        bracketed = start > 0 and end < len(text) and text[start - 1] == "<" and text[end] == ">"
        flags.append(not bracketed and is_content_word(text[start:end]))
    return flags
