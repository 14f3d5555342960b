"""Perturbed copies of labelled sentences: the text users have, not the text of the benchmark.

Every function is pure and seeded: the same sentences, arguments and seed give the same
output on every machine (Python's `random.Random` seeded with a string is reproducible across
processes and platforms). Gold tags are kept: case and typos change no token boundaries, and
mention replacement re-lays the tags of each swapped mention in the sentences' own scheme.

Used twice: `rnner robustness` scores a model on perturbed copies of a file, and training
(`data.case_augment`, `data.typo_augment`, `data.mention_augment`) perturbs a share of the
training sentences afresh each epoch (`augment_epoch`).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence

from . import tags as tagging
from .conll import Sentence

Mention = tuple[str, ...]
Pool = Mapping[str, Sequence[Mention]]  # entity type -> mentions to draw from

CASES = ("lower", "upper", "title")
PERTURBATIONS = ("lower", "upper", "title", "typos", "mentions")
EDITS = ("insert", "delete", "substitute", "swap")

# QWERTY neighbours of each letter: the keys a finger slips onto, so substitutions and
# insertions look like real typing errors. Each row sits about half a key right of the row
# above it, so a key touches columns c and c+1 of the row above and c-1 and c of the row below.
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
KEYBOARD: dict[str, str] = {}
for _r, _row in enumerate(_ROWS):
    for _c, _key in enumerate(_row):
        _near_keys = [
            (_r, _c - 1),
            (_r, _c + 1),
            (_r - 1, _c),
            (_r - 1, _c + 1),
            (_r + 1, _c - 1),
            (_r + 1, _c),
        ]
        KEYBOARD[_key] = "".join(
            sorted(
                _ROWS[r][c] for r, c in _near_keys if 0 <= r < len(_ROWS) and 0 <= c < len(_ROWS[r])
            )
        )


def rng_for(seed: int, *parts: object) -> random.Random:
    """A generator of its own for each (seed, purpose, ...): drawing for one perturbation or
    epoch never shifts another, and nothing touches the global or training generators."""
    return random.Random("/".join(str(p) for p in (seed, *parts)))


# --- case ------------------------------------------------------------------------------------


def title_token(token: str) -> str:
    """'mcDONALD' -> 'Mcdonald', '1996-08-22' unchanged: first letter up, the rest down."""
    for i, ch in enumerate(token):
        if ch.isalpha():
            return token[:i] + ch.upper() + token[i + 1 :].lower()
    return token


def recase(tokens: Sequence[str], case: str) -> list[str]:
    """Tokens lower-, upper- or title-cased. Only a token whose length would change (German
    sharp s upper-cases to 'SS') is left alone, so characters stay aligned with the original."""
    if case not in CASES:
        raise ValueError(f"unknown case {case!r}: expected one of {', '.join(CASES)}")
    fn = {"lower": str.lower, "upper": str.upper, "title": title_token}[case]
    out = []
    for t in tokens:
        new = fn(t)
        out.append(new if len(new) == len(t) and new.strip() else t)
    return out


# --- typos -----------------------------------------------------------------------------------


def typo_eligible(token: str) -> bool:
    """Words get typos; numbers, punctuation and single letters do not (a typo there would
    change what the token is, not how it is spelled)."""
    return sum(ch.isalpha() for ch in token) >= 2


def _near(ch: str, rng: random.Random) -> str:
    keys = KEYBOARD.get(ch.lower())
    if not keys:  # not a Latin letter: any other letter of the alphabet
        keys = "abcdefghijklmnopqrstuvwxyz".replace(ch.lower(), "")
    new = rng.choice(keys)
    return new.upper() if ch.isupper() else new


def typo(token: str, rng: random.Random) -> str:
    """One character edit of a word: insert a key next to a letter, delete a letter,
    substitute a letter by a neighbouring key, or swap two adjacent different letters.
    The result differs from the token, is never empty and holds no whitespace."""
    letters = [i for i, ch in enumerate(token) if ch.isalpha()]
    if not letters:
        raise ValueError(f"no letter to misspell in {token!r}")
    swaps = [
        i
        for i in range(len(token) - 1)
        if token[i].isalpha() and token[i + 1].isalpha() and token[i] != token[i + 1]
    ]
    edits = ["insert", "substitute"]
    if len(token) > 1:
        edits.append("delete")
    if swaps:
        edits.append("swap")
    edit = rng.choice(edits)
    if edit == "swap":
        i = rng.choice(swaps)
        return token[:i] + token[i + 1] + token[i] + token[i + 2 :]
    i = rng.choice(letters)
    if edit == "delete":
        return token[:i] + token[i + 1 :]
    if edit == "insert":
        return token[: i + 1] + _near(token[i], rng) + token[i + 1 :]
    return token[:i] + _near(token[i], rng) + token[i + 1 :]


def add_typos(sents: Sequence[Sentence], rate: float, rng: random.Random) -> list[Sentence]:
    """A typo in exactly round(rate * n) of the n eligible tokens of `sents` (words of two
    letters or more), chosen uniformly: the rate is counted, not merely expected."""
    if not 0 <= rate <= 1:
        raise ValueError(f"typo rate {rate} is not in [0, 1]")
    where = [
        (i, j) for i, s in enumerate(sents) for j, t in enumerate(s.tokens) if typo_eligible(t)
    ]
    chosen = sorted(rng.sample(where, round(rate * len(where))))
    tokens = {i: list(s.tokens) for i, s in enumerate(sents)}
    for i, j in chosen:
        tokens[i][j] = typo(tokens[i][j], rng)
    return [
        s if tuple(tokens[i]) == s.tokens else dataclasses.replace(s, tokens=tuple(tokens[i]))
        for i, s in enumerate(sents)
    ]


# --- mentions --------------------------------------------------------------------------------


def mentions(sents: Sequence[Sentence], scheme: str) -> dict[str, list[Mention]]:
    """The distinct gold mentions of each type, in order of first appearance."""
    found: dict[str, dict[Mention, None]] = {}
    for s in sents:
        for label, a, b in tagging.spans(s.tags or (), scheme):
            found.setdefault(label, {})[tuple(s.tokens[a:b])] = None
    return {label: list(ms) for label, ms in found.items()}


def unseen_mentions(
    sents: Sequence[Sentence], scheme: str, train: Sequence[Sentence], train_scheme: str
) -> dict[str, list[Mention]]:
    """Mentions of `sents` whose text is no gold mention of any type in `train`: names the
    model cannot have learnt by heart."""
    seen = {m for ms in mentions(train, train_scheme).values() for m in ms}
    return {
        label: [m for m in ms if m not in seen] for label, ms in mentions(sents, scheme).items()
    }


def replace_mentions(
    sents: Sequence[Sentence], pool: Pool, scheme: str, rng: random.Random, share: float = 1.0
) -> list[Sentence]:
    """Each gold mention (with chance `share`) swapped for a mention of the same type drawn
    from `pool`, a different one where the pool has one; tags re-laid in `scheme` for the
    new lengths. Types missing from the pool keep their mentions."""
    out = []
    for s in sents:
        spans = tagging.spans(s.tags or (), scheme)
        if not spans:
            out.append(s)
            continue
        tokens: list[str] = []
        new_spans: list[tagging.Span] = []
        pos = 0
        for label, a, b in spans:
            tokens += s.tokens[pos:a]
            old = tuple(s.tokens[a:b])
            choices = pool.get(label) or ()
            new = old
            if choices and (share >= 1 or rng.random() < share):
                new = rng.choice(choices)
                if new == old and len(choices) > 1:
                    new = rng.choice([m for m in choices if m != old] or choices)
            new_spans.append((label, len(tokens), len(tokens) + len(new)))
            tokens += new
            pos = b
        tokens += s.tokens[pos:]
        out.append(
            dataclasses.replace(
                s,
                tokens=tuple(tokens),
                tags=tuple(tagging.from_spans(new_spans, len(tokens), scheme)),
            )
        )
    return out


# --- whole files -----------------------------------------------------------------------------


def perturb(
    sents: Sequence[Sentence],
    kind: str,
    scheme: str,
    seed: int,
    *,
    typo_rate: float = 0.1,
    pool: Pool | None = None,
) -> list[Sentence]:
    """A perturbed copy of a labelled file's sentences, `kind` one of PERTURBATIONS."""
    if kind in CASES:
        return [dataclasses.replace(s, tokens=tuple(recase(s.tokens, kind))) for s in sents]
    if kind == "typos":
        return add_typos(sents, typo_rate, rng_for(seed, "typos"))
    if kind == "mentions":
        if pool is None:
            raise ValueError("mention replacement needs a pool of mentions")
        return replace_mentions(sents, pool, scheme, rng_for(seed, "mentions"))
    raise ValueError(f"unknown perturbation {kind!r}: expected one of {', '.join(PERTURBATIONS)}")


def augment_epoch(
    sents: Sequence[Sentence],
    scheme: str,
    seed: int,
    epoch: int,
    *,
    case: float = 0.0,
    case_unit: str = "sentence",
    case_lower: float = 0.0,
    typos: float = 0.0,
    mention_share: float = 0.0,
    pool: Pool | None = None,
) -> list[Sentence]:
    """One epoch's training sentences: mentions swapped (each with chance `mention_share`,
    for a same-type training mention: Dai & Adel 2020), then a share `case` of the sentences
    (or, with `case_unit="document"`, of the documents, every sentence alike) lower-, upper-
    or title-cased, then typos in a share `typos` of the words. The case is one of the three
    at random, or with `case_lower` > 0 lower with that chance and else upper or title.
    Drawn afresh for each (seed, epoch), from generators of its own, so a resumed run redraws
    exactly what the interrupted one had."""
    out = list(sents)
    if mention_share and pool:
        out = replace_mentions(
            out, pool, scheme, rng_for(seed, "augment", epoch, "mentions"), share=mention_share
        )
    if case:
        rng = rng_for(seed, "augment", epoch, "case")

        def draw() -> str | None:
            if rng.random() >= case:
                return None
            if case_lower:
                return "lower" if rng.random() < case_lower else rng.choice(CASES[1:])
            return rng.choice(CASES)

        # A document cased as a whole, as users' text comes: a lower-cased sentence beside
        # cased ones of its document lets a model that pools over the document (repeat
        # pooling) read the answer from the cased copies, which fully lower-cased text lacks.
        by_doc = case_unit == "document"
        doc_case: dict[int, str | None] = {}
        for i, s in enumerate(out):
            if by_doc:
                if s.doc_id not in doc_case:
                    doc_case[s.doc_id] = draw()
                chosen = doc_case[s.doc_id]
            else:
                chosen = draw()
            if chosen is not None:
                out[i] = dataclasses.replace(s, tokens=tuple(recase(s.tokens, chosen)))
    if typos:
        out = add_typos(out, typos, rng_for(seed, "augment", epoch, "typos"))
    return out
