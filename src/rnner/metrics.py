"""Scoring: chunk-level precision/recall/F1 counted exactly as conlleval.pl, plus token reports.

Chunks come from `tags.conlleval_chunks`, so a score never depends on the scheme a file uses
and ill-formed predictions are counted the way the CoNLL shared tasks counted them.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rnner.conll import DOCSTART
from rnner.errors import ScoreInputError
from rnner.tags import conlleval_chunks, split_tag

BOUNDARY = "-X-"  # conlleval's sentence-boundary marker in the first column

Tags = Sequence[Sequence[str]]


@dataclass(frozen=True)
class TypeScores:
    """Scores for one entity type; `support` is the gold count, `predicted` the found count."""

    precision: float
    recall: float
    f1: float
    support: int
    predicted: int
    correct: int


@dataclass(frozen=True)
class EntityScores:
    """Corpus-level chunk scores (fractions in [0, 1]) with the raw counts behind them.

    The counts are kept because conlleval's report is computed from them, not from the
    rounded fractions.
    """

    precision: float
    recall: float
    f1: float
    accuracy: float
    per_type: dict[str, TypeScores]
    correct_chunks: int
    gold_chunks: int
    pred_chunks: int
    correct_tokens: int
    tokens: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary: overall scores and per-type precision/recall/f1/support."""
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "accuracy": self.accuracy,
            "per_type": {
                name: {
                    "precision": ts.precision,
                    "recall": ts.recall,
                    "f1": ts.f1,
                    "support": ts.support,
                }
                for name, ts in sorted(self.per_type.items())
            },
        }


def _check_lengths(gold: Tags, pred: Tags) -> None:
    """Refuse misaligned input: zip would silently drop tokens and inflate scores."""
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} sentences but prediction has {len(pred)}")
    for i, (g, p) in enumerate(zip(gold, pred, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: gold has {len(g)} tags but prediction has {len(p)}")


def _prf(correct: int, predicted: int, gold: int) -> tuple[float, float, float]:
    """Precision, recall, F1 as fractions; 0 where undefined, as conlleval does."""
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def entity_scores(gold: Tags, pred: Tags) -> EntityScores:
    """Chunk scores as conlleval.pl counts them.

    A predicted chunk is correct when a gold chunk has the same type, start and end; each
    sentence is chunked on its own (boundaries end chunks). Accuracy compares tag strings.
    Types are those found in gold or prediction.
    """
    _check_lengths(gold, pred)
    gold_counts: Counter[str] = Counter()
    pred_counts: Counter[str] = Counter()
    correct_counts: Counter[str] = Counter()
    tokens = correct_tokens = 0
    for g, p in zip(gold, pred, strict=True):
        gold_chunks = conlleval_chunks(g)
        pred_chunks = conlleval_chunks(p)
        gold_counts.update(c[0] for c in gold_chunks)
        pred_counts.update(c[0] for c in pred_chunks)
        correct_counts.update(c[0] for c in set(gold_chunks).intersection(pred_chunks))
        tokens += len(g)
        correct_tokens += sum(a == b for a, b in zip(g, p, strict=True))
    per_type = {}
    for name in sorted(gold_counts.keys() | pred_counts.keys()):
        c, f, n = correct_counts[name], pred_counts[name], gold_counts[name]
        per_type[name] = TypeScores(*_prf(c, f, n), support=n, predicted=f, correct=c)
    total_correct, total_pred, total_gold = (
        sum(correct_counts.values()),
        sum(pred_counts.values()),
        sum(gold_counts.values()),
    )
    precision, recall, f1 = _prf(total_correct, total_pred, total_gold)
    return EntityScores(
        precision=precision,
        recall=recall,
        f1=f1,
        accuracy=correct_tokens / tokens if tokens else 0.0,
        per_type=per_type,
        correct_chunks=total_correct,
        gold_chunks=total_gold,
        pred_chunks=total_pred,
        correct_tokens=correct_tokens,
        tokens=tokens,
    )


def _percentages(correct: int, predicted: int, gold: int) -> tuple[float, float, float]:
    """conlleval's own arithmetic (percent first, then FB1), so rounding matches it exactly."""
    precision = 100 * correct / predicted if predicted else 0.0
    recall = 100 * correct / gold if gold else 0.0
    fb1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, fb1


def conlleval_report(scores: EntityScores) -> str:
    """The text conlleval.pl prints (default, non-LaTeX mode), newline-terminated."""
    s = scores
    lines = [
        f"processed {s.tokens} tokens with {s.gold_chunks} phrases; "
        f"found: {s.pred_chunks} phrases; correct: {s.correct_chunks}.\n"
    ]
    if s.tokens > 0:
        p, r, f = _percentages(s.correct_chunks, s.pred_chunks, s.gold_chunks)
        accuracy = 100 * s.correct_tokens / s.tokens
        lines.append(
            f"accuracy: {accuracy:6.2f}%; precision: {p:6.2f}%; recall: {r:6.2f}%; FB1: {f:6.2f}\n"
        )
    for name in sorted(s.per_type):
        ts = s.per_type[name]
        p, r, f = _percentages(ts.correct, ts.predicted, ts.support)
        # Perl's %17s pads by bytes, not characters.
        padded = " " * max(0, 17 - len(name.encode("utf-8"))) + name
        lines.append(
            f"{padded}: precision: {p:6.2f}%; recall: {r:6.2f}%; FB1: {f:6.2f}  {ts.predicted}\n"
        )
    return "".join(lines)


def _parse_conlleval(
    lines: Iterable[str], path: str, skip_docstart: bool
) -> tuple[list[list[str]], list[list[str]]]:
    gold_sents: list[list[str]] = []
    pred_sents: list[list[str]] = []
    gold: list[str] = []
    pred: list[str] = []
    columns: int | None = None
    real_tokens = 0
    for lineno, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0] == BOUNDARY:
            if gold:
                gold_sents.append(gold)
                pred_sents.append(pred)
            gold, pred = [], []
            continue
        if columns is None:
            columns = len(fields)
        elif len(fields) != columns:
            message = f"expected {columns} columns as on the first line, found {len(fields)}"
            raise ScoreInputError(path, lineno, message)
        if len(fields) < 2:
            raise ScoreInputError(
                path, lineno, "expected at least 2 columns (gold tag, predicted tag), found 1"
            )
        if fields[0] == DOCSTART:
            if skip_docstart:
                continue
        else:
            real_tokens += 1
            for tag in fields[-2:]:
                try:
                    split_tag(tag)
                except ValueError as e:
                    raise ScoreInputError(path, lineno, str(e)) from None
        gold.append(fields[-2])
        pred.append(fields[-1])
    if gold:
        gold_sents.append(gold)
        pred_sents.append(pred)
    if not real_tokens:
        raise ScoreInputError(path, None, "no sentences found")
    return gold_sents, pred_sents


def read_conlleval(
    source: str | os.PathLike[str] | Iterable[str],
    *,
    skip_docstart: bool = False,
    path: str = "<input>",
) -> tuple[list[list[str]], list[list[str]]]:
    """Parse conlleval input (a path, or an iterable of lines) into gold and predicted tags.

    Columns are whitespace-separated; the last two are the gold then the predicted tag. Blank
    lines and lines whose first column is '-X-' separate sentences. Like conlleval.pl, a
    '-DOCSTART-' line is an ordinary token (it counts towards the token total and accuracy)
    unless `skip_docstart` drops it. Every token line must have as many columns as the first,
    as conlleval requires; violations raise ScoreInputError naming path and line.
    """
    if isinstance(source, str | os.PathLike):
        from .conll import read_text  # decoding errors reported as path:line

        path = os.fspath(source)
        return _parse_conlleval(read_text(path).split("\n"), path, skip_docstart)
    return _parse_conlleval(source, path, skip_docstart)


def _flatten(gold: Tags, pred: Tags) -> tuple[list[str], list[str], list[str]]:
    _check_lengths(gold, pred)
    y_true = [t for sent in gold for t in sent]
    y_pred = [t for sent in pred for t in sent]
    return y_true, y_pred, sorted(set(y_true) | set(y_pred))


def token_report(gold: Tags, pred: Tags, digits: int = 2) -> tuple[str, dict[str, Any]]:
    """Per-tag scikit-learn classification report (text and dict), 'O' included.

    Token-level scores complement the chunk scores when diagnosing boundary errors.
    """
    y_true, y_pred, labels = _flatten(gold, pred)
    # Imported here so that importing rnner.metrics stays cheap for training loops.
    from sklearn.metrics import classification_report

    options: dict[str, Any] = {"labels": labels, "digits": digits, "zero_division": 0}
    text = classification_report(y_true, y_pred, **options)
    data = classification_report(y_true, y_pred, output_dict=True, **options)
    return text, data


def confusion(gold: Tags, pred: Tags) -> tuple[list[str], np.ndarray]:
    """Sorted tag labels and the token confusion matrix (rows gold, columns predicted)."""
    y_true, y_pred, labels = _flatten(gold, pred)
    index = {label: i for i, label in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    if y_true:
        np.add.at(matrix, ([index[t] for t in y_true], [index[t] for t in y_pred]), 1)
    return labels, matrix
