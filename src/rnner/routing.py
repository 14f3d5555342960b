"""The case router's rule: which of a cased and a caseless model reads a document.

A model trained on cased text is the most accurate on it and fails on text without case
(lower-cased CoNLL-2003 test: F1 6); a model trained with case augmentation reads both, a
little less accurately on cased text. Stanford CoreNLP ships the two kinds and lets the user
pick; a routed model directory (`rnner.runs.ROUTER_FILE`) holds both and picks per document:
a document whose alphabetic words include both lower-case words and capitalised ones (Title
or mIxed, as "Peter" or "McDonald") is cased text, anything else (all lower, all UPPER, every
word Title-cased) goes to the caseless model. So does a document in which more than a fifth of
the sentences (of 3 words or more) have only lower-case words: text typed partly without case
would otherwise go to the cased model, which finds almost nothing in its lower-cased part.
And so does a document of one sentence (a server's one-sentence request): the cased model's
edge comes from reading the whole article, and on one-sentence documents it is no better than
the caseless model (dev F1 93.28 against 93.39, research/case_router.py), while a server's
batch split between the two models costs throughput. Pure functions of the tokens, so a
document's route never depends on what else is tagged with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .batching import casing_class

CASED = "cased"
CASELESS = "caseless"
ROUTES = (CASED, CASELESS)
# Every CoNLL-2003 training and dev article has at least 2.8 % of each (research/case_router.py
# prints the lowest shares); a text without case has none of one or the other.
MIN_SHARE = 0.02
# The share of a document's sentences of `SENTENCE_WORDS` words or more that may be all
# lower-case: at most a fifth in 98 % of training articles and in every dev article, more in 94
# % of training articles with half of their sentences lower-cased (research/case_router.py).
MAX_LOWER_SENTENCES = 0.2
SENTENCE_WORDS = 3
# Documents of fewer sentences go to the caseless model.
MIN_SENTENCES = 2

_LOWER, _UPPER, _TITLE, _MIXED = 1, 2, 3, 4  # rnner.batching.CASING


def case_counts(tokens: Iterable[str]) -> tuple[int, int, int]:
    """Alphabetic words that are lower-case, capitalised (Title or mIxed), and UPPER."""
    lower = capital = upper = 0
    for token in tokens:
        c = casing_class(token)
        if c == _LOWER:
            lower += 1
        elif c in (_TITLE, _MIXED):
            capital += 1
        elif c == _UPPER:
            upper += 1
    return lower, capital, upper


def lower_sentence_share(sentences: Iterable[Sequence[str]]) -> float:
    """The share of the sentences with `SENTENCE_WORDS` alphabetic words or more whose words are
    all lower-case (0 without such sentences)."""
    long = lower = 0
    for tokens in sentences:
        lo, capital, upper = case_counts(tokens)
        if lo + capital + upper >= SENTENCE_WORDS:
            long += 1
            lower += capital == upper == 0
    return lower / long if long else 0.0


def route(
    sentences: Sequence[Sequence[str]],
    min_share: float = MIN_SHARE,
    max_lower_sentences: float = MAX_LOWER_SENTENCES,
    min_sentences: int = MIN_SENTENCES,
) -> str:
    """`CASED` when the document has `min_sentences` sentences or more, at least `min_share` of
    its alphabetic words are lower-case, at least `min_share` capitalised, and at most
    `max_lower_sentences` of its sentences all lower-case; `CASELESS` otherwise (also for a
    document without words)."""
    if sum(1 for s in sentences if len(s)) < min_sentences:
        return CASELESS
    lower, capital, upper = case_counts(t for s in sentences for t in s)
    words = lower + capital + upper
    if words == 0 or min(lower, capital) < min_share * words:
        return CASELESS
    return CASED if lower_sentence_share(sentences) <= max_lower_sentences else CASELESS
