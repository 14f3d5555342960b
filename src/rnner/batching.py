"""Sentences to tensors, once: a table of the distinct tokens of a dataset (word id, casing
class, characters) and one flat array of token-table rows. A batch is then a few numpy
gathers, and the character encoder runs once per distinct token in the batch, not per token."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

from .vocab import Vocabs

MAX_WORD_CHARS = 40  # longer tokens (URLs, garbage) are cut for the character encoder
CASING = ("pad", "lower", "upper", "title", "mixed", "numeric", "has_digit", "punct", "other")


def casing_class(token: str) -> int:
    """Capitalisation survives lower-cased word vectors through this small feature."""
    if token.isdigit():
        return 5
    if any(c.isdigit() for c in token):
        return 6
    if token.isalpha():
        if token.islower():
            return 1
        if token.isupper():
            return 2
        if token[0].isupper() and token[1:].islower():
            return 3
        return 4
    if not any(c.isalnum() for c in token):
        return 7
    return 8


@dataclass
class TokenTable:
    """Row 0 is padding; every other row is one distinct surface token."""

    words: np.ndarray  # [U] word ids
    casing: np.ndarray  # [U]
    chars: np.ndarray  # [U, L] char ids, 0-padded
    char_lengths: np.ndarray  # [U]
    lower: np.ndarray  # [U] the same id for the same spelling up to case


@dataclass
class Encoded:
    table: TokenTable
    tokens: np.ndarray  # flat token-table rows of all sentences
    tags: np.ndarray | None  # flat tag ids
    offsets: np.ndarray  # [N] start of each sentence in the flat arrays
    lengths: np.ndarray  # [N]
    trust: np.ndarray | None = None  # flat chance that each tag is right (None: all are)
    lexicon: np.ndarray | None = None  # [tokens, lexicon types] match codes (model.lexicon)
    soft: np.ndarray | None = None  # [tokens, tags] teachers' tag marginals (train.teachers)

    def __len__(self) -> int:
        return len(self.lengths)


@dataclass
class Batch:
    index: torch.Tensor  # [B] positions of these sentences in the dataset
    lengths: torch.Tensor  # [B]
    mask: torch.Tensor  # [B, T] bool
    words: torch.Tensor  # [B, T]
    casing: torch.Tensor  # [B, T]
    chars: torch.Tensor  # [U, L] characters of the batch's distinct tokens
    char_lengths: torch.Tensor  # [U]
    char_index: torch.Tensor  # [B, T] row of each token in `chars`
    lower: torch.Tensor  # [B, T] equal for tokens spelled alike up to case
    tags: torch.Tensor | None  # [B, T]
    trust: torch.Tensor | None = None  # [B, T] float, 1 at padding
    lexicon: torch.Tensor | None = None  # [B, T, lexicon types] match codes, 0 at padding
    soft: torch.Tensor | None = None  # [B, T, tags] teachers' tag marginals, 0 at padding

    def to(self, device: torch.device | str) -> Batch:
        moved: dict[str, Any] = {
            f.name: None if (v := getattr(self, f.name)) is None else v.to(device)
            for f in fields(self)
        }
        return Batch(**moved)

    @property
    def num_tokens(self) -> int:
        return int(self.lengths.sum())


def encode(
    sentences: Sequence[Sequence[str]],
    vocabs: Vocabs,
    tags: Sequence[Sequence[str]] | None = None,
    trust: Sequence[Sequence[float]] | None = None,
    lexicon: Sequence[np.ndarray] | None = None,
    soft: Sequence[np.ndarray] | None = None,
) -> Encoded:
    """Encode token sequences (and optionally their tags, in the model's scheme, the chance
    that each tag is right, their lexicon match codes and soft tag targets, one
    [length, columns] array per sequence)."""
    rows: dict[str, int] = {}
    flat: list[int] = []
    for tokens in sentences:
        for t in tokens:
            r = rows.get(t)
            if r is None:
                r = rows[t] = len(rows) + 1
            flat.append(r)
    surfaces = list(rows)
    n = len(surfaces) + 1
    char_lengths = np.zeros(n, dtype=np.int64)
    chars = np.zeros((n, min(MAX_WORD_CHARS, max((len(s) for s in surfaces), default=1))), np.int64)
    for i, s in enumerate(surfaces, 1):
        ids = [vocabs.chars.id(c) for c in s[: chars.shape[1]]]
        chars[i, : len(ids)] = ids
        char_lengths[i] = len(ids)
    table = TokenTable(
        words=np.array([0] + [vocabs.word_id(s) for s in surfaces], dtype=np.int64),
        casing=np.array([0] + [casing_class(s) for s in surfaces], dtype=np.int64),
        chars=chars,
        char_lengths=char_lengths,
        lower=np.array([0] + lower_ids(surfaces), dtype=np.int64),
    )
    lengths = np.array([len(s) for s in sentences], dtype=np.int64)
    offsets = np.zeros(len(lengths), dtype=np.int64)
    if len(lengths):
        offsets[1:] = np.cumsum(lengths)[:-1]
    tag_ids = None
    if tags is not None:
        tag_ids = np.array([vocabs.tags.id(t) for ts in tags for t in ts], dtype=np.int64)
    trust_flat = None
    if trust is not None:
        trust_flat = np.array([x for row in trust for x in row], dtype=np.float32)
    return Encoded(
        table,
        np.array(flat, dtype=np.int64),
        tag_ids,
        offsets,
        lengths,
        trust_flat,
        _stack(lexicon, np.int64),
        _stack(soft, np.float32),
    )


def _stack(rows: Sequence[np.ndarray] | None, dtype: type) -> np.ndarray | None:
    """Per-sequence [length, columns] arrays as one flat [tokens, columns] array."""
    if rows is None:
        return None
    return np.concatenate([np.asarray(r, dtype=dtype) for r in rows]) if len(rows) else None


def lower_ids(surfaces: Sequence[str]) -> list[int]:
    """One id per distinct lower-cased form, from 1, in order of first appearance."""
    ids: dict[str, int] = {}
    return [ids.setdefault(s.lower(), len(ids) + 1) for s in surfaces]


def units(
    doc_ids: Sequence[int], lengths: Sequence[int], context: str, max_tokens: int
) -> list[list[int]]:
    """How sentences are grouped into the sequences the network reads.

    "sentence": each alone. "document": consecutive sentences of one document packed into
    sequences of at most `max_tokens` tokens, so the recurrent layer sees the neighbouring
    sentences (a name spelled out in full earlier in an article disambiguates later mentions).
    Tags are still scored per sentence.
    """
    if context == "sentence":
        return [[i] for i in range(len(lengths))]
    out: list[list[int]] = []
    size = 0
    for i, (doc, n) in enumerate(zip(doc_ids, lengths, strict=True)):
        if out and doc == doc_ids[out[-1][-1]] and size + n <= max_tokens:
            out[-1].append(i)
            size += n
        else:
            out.append([i])
            size = n
    return out


def join_units(items: Sequence[Sequence], groups: list[list[int]]) -> list[list]:
    return [[x for i in g for x in items[i]] for g in groups]


def split_units(
    rows: Sequence[Sequence], groups: list[list[int]], lengths: Sequence[int]
) -> list[list]:
    """Inverse of join_units: per-unit outputs back to per-sentence ones."""
    out: list[list] = [[] for _ in lengths]
    for row, g in zip(rows, groups, strict=True):
        pos = 0
        for i in g:
            out[i] = list(row[pos : pos + lengths[i]])
            pos += lengths[i]
    return out


def make_batch(data: Encoded, index: np.ndarray) -> Batch:
    lengths = data.lengths[index]
    width = int(lengths.max())
    steps = np.arange(width)
    mask = steps[None, :] < lengths[:, None]
    pos = np.where(mask, data.offsets[index][:, None] + steps[None, :], 0)
    tok = np.where(mask, data.tokens[pos] if len(data.tokens) else 0, 0)
    distinct, inverse = np.unique(tok, return_inverse=True)
    tags = None
    if data.tags is not None:
        tags = torch.from_numpy(np.where(mask, data.tags[pos], 0))
    trust = None
    if data.trust is not None:
        trust = torch.from_numpy(np.where(mask, data.trust[pos], np.float32(1)))
    lexicon = soft = None
    if data.lexicon is not None:
        lexicon = torch.from_numpy(np.where(mask[:, :, None], data.lexicon[pos], 0))
    if data.soft is not None:
        soft = torch.from_numpy(np.where(mask[:, :, None], data.soft[pos], np.float32(0)))
    t = data.table
    # Cut the characters to this batch's longest token, not the corpus's: the char encoder
    # then does no work on padding.
    char_lengths = t.char_lengths[distinct]
    chars = t.chars[distinct][:, : max(int(char_lengths.max()), 1)]
    return Batch(
        index=torch.from_numpy(np.asarray(index, dtype=np.int64)),
        lengths=torch.from_numpy(lengths),
        mask=torch.from_numpy(mask),
        words=torch.from_numpy(t.words[tok]),
        casing=torch.from_numpy(t.casing[tok]),
        chars=torch.from_numpy(chars),
        char_lengths=torch.from_numpy(char_lengths),
        char_index=torch.from_numpy(inverse.reshape(tok.shape)),
        lower=torch.from_numpy(t.lower[tok]),
        tags=tags,
        trust=trust,
        lexicon=lexicon,
        soft=soft,
    )


def batch_indices(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None = None
) -> list[np.ndarray]:
    """Sentences grouped by length so batches carry little padding.

    With `rng`, lengths get noise before sorting and the batch order is shuffled, so every
    epoch sees different batches that are still nearly padding-free.
    """
    if rng is None:
        order = np.argsort(lengths, kind="stable")
    else:
        order = np.argsort(lengths + rng.uniform(0, 2, size=len(lengths)), kind="stable")
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(chunks)
    return chunks


def length_buckets(
    lengths: np.ndarray, max_batch: int, step_rows: float = 4.0, call_steps: float = 64.0
) -> list[np.ndarray]:
    """Sentences sorted by length and cut into batches of at most `max_batch` where that
    saves time: a batch costs its longest sentence's length times (rows + `step_rows`, the
    fixed cost of one time step of the recurrent layers, in rows) plus `call_steps` (the
    fixed cost of one model call, in row-steps); the cuts minimise the sum (exactly, by
    dynamic programming over the distinct lengths).

    Why: a dense batch pays for padding. A server's batch holds whatever requests arrived
    together (a 3-token sentence beside a 60-token one), and tagged as one batch it spends
    most of its time on padding; cut where the lengths jump, it costs about what a sorted
    offline batch does. A sorted corpus-sized input gets nearly `batch_indices`' chunks.
    """
    order = np.argsort(lengths, kind="stable")
    ordered = np.asarray(lengths)[order]
    # Cutting inside a run of equal lengths never helps (but for the size cap, below).
    ends = [*(np.flatnonzero(np.diff(ordered)) + 1).tolist(), len(order)]

    def cost(start: int, end: int) -> float:
        rows = end - start
        calls = -(-rows // max_batch)
        return calls * call_steps + float(ordered[end - 1]) * (rows + calls * step_rows)

    best = [0.0] + [float("inf")] * len(ends)  # best[k]: the first ends[k - 1] sentences
    cut = [0] * (len(ends) + 1)
    for k, end in enumerate(ends, start=1):
        for j in range(k):
            c = best[j] + cost(ends[j - 1] if j else 0, end)
            if c < best[k]:
                best[k], cut[k] = c, j
    segments = []
    k = len(ends)
    while k:
        j = cut[k]
        segments.append((ends[j - 1] if j else 0, ends[k - 1]))
        k = j
    out: list[np.ndarray] = []
    for start, end in reversed(segments):
        calls = -(-(end - start) // max_batch)
        out.extend(np.array_split(order[start:end], calls))
    return out


def iterate(
    data: Encoded, batch_size: int, rng: np.random.Generator | None = None
) -> Iterator[Batch]:
    for index in batch_indices(data.lengths, batch_size, rng):
        yield make_batch(data, index)
