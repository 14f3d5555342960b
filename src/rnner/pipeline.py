"""From files to the network's input and back, shared by training and inference.

A corpus is read here (with its trust file and tag checks), each split is encoded into
padded-id units (sentences, or runs of sentences of one document), and predicted tag ids are
decoded back to the scheme the file came in. Training (`rnner.training`) and inference
(`rnner.predict`) both sit on top of this module; it imports neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import batching, tags
from .batching import Encoded
from .config import Config
from .conll import Sentence, check_tags, read_conll, read_text
from .data import resolve_split
from .errors import InputError
from .metrics import entity_scores, token_report
from .model import RNNTagger
from .vocab import Vocabs


@dataclass
class Corpus:
    """The splits as read, plus the scheme their tags came in (predictions go back to it)."""

    train: list[Sentence]
    dev: list[Sentence]
    test: list[Sentence]
    scheme: str
    paths: dict[str, str] = field(default_factory=dict)
    trust: list[float] | None = None  # per training sentence (data.train_trust)
    # per training sentence, the teachers' mean tag marginals [length, tags] (train.teachers)
    soft: list[np.ndarray] | None = None


def load_corpus(cfg: Config) -> Corpus:
    """The three splits a config names (or its dataset's files), tags checked, trust read."""
    d = cfg.data
    paths = {}
    splits = {}
    trust: list[float] | None = None
    for split in ("train", "dev", "test"):
        given = getattr(d, split)
        path = Path(given) if given else resolve_split(d.dataset, split, d.data_dir or None)
        sents = read_conll(path, word_column=d.word_column, tag_column=d.tag_column)
        if split == "train" and d.train_trust:
            trust = read_trust(d.train_trust, sents, str(path))
            paths["train_trust"] = d.train_trust
        if d.max_sentences:
            sents = sents[: d.max_sentences]
            trust = trust[: d.max_sentences] if trust is not None else None
        splits[split] = sents
        paths[split] = str(path)
    if d.train_on_dev:  # the train+dev protocol: dev still reported, but no longer held out
        splits["train"] = splits["train"] + splits["dev"]
        if trust is not None:
            trust += [1.0] * len(splits["dev"])
    scheme = check_tags(splits["train"], paths["train"])
    types = {
        kind
        for s in splits["train"]
        for t in _gold(s)
        if (kind := tags.split_tag(t)[1]) is not None
    }
    for split in ("dev", "test"):
        if split in splits:
            check_tags(splits[split], paths[split], types=types)
    return Corpus(splits["train"], splits["dev"], splits.get("test", []), scheme, paths, trust)


def _gold(s: Sentence) -> tuple[str, ...]:
    """A sentence's tags: every split of a corpus is read labelled (read_conll's default)."""
    assert s.tags is not None, f"the sentence at line {s.line} has no tags"
    return s.tags


def read_trust(path: str, train: Sequence[Sentence], train_path: str) -> list[float]:
    """Per training sentence, the chance that its labels are right, from a data.train_trust
    file (`line<TAB>trust` lines, keyed by the line of a sentence's first token, so the file
    says which sentences it means; `#` starts a comment). Unlisted sentences get 1."""
    index = {s.line: i for i, s in enumerate(train)}
    trust = [1.0] * len(train)
    for n, raw in enumerate(read_text(path).split("\n"), 1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        fields = text.split()
        try:
            if len(fields) != 2:
                raise ValueError
            line, value = int(fields[0]), float(fields[1])
        except ValueError:
            raise InputError(path, n, f"expected 'LINE<TAB>TRUST', found {raw.strip()!r}") from None
        if line not in index:
            raise InputError(path, n, f"no training sentence starts at line {line} of {train_path}")
        if not 0 < value <= 1:
            raise InputError(path, n, f"trust {value} is not in (0, 1]")
        trust[index[line]] = value
    return trust


def to_scheme(sents: Sequence[Sentence], scheme: str, source: str) -> list[list[str]]:
    """Each sentence's tags converted from the file's scheme `source` to `scheme`."""
    return [tags.convert(list(_gold(s)), scheme, source) for s in sents]


@dataclass
class Split:
    """A split encoded for the network: one row per unit (a sentence, or a run of
    sentences of one document), and the map back to sentences."""

    data: Encoded
    groups: list[list[int]]
    lengths: list[int]  # of the sentences

    def batches(self, batch_size: int) -> list[batching.Batch]:
        return list(batching.iterate(self.data, batch_size))


def encode_split(
    sents: Sequence[Sentence],
    vocabs: Vocabs,
    cfg: Config,
    source_scheme: str | None = None,
    trust: Sequence[float] | None = None,
    soft: Sequence[np.ndarray] | None = None,
) -> Split:
    """Tags (when `source_scheme` is given) are converted to the training scheme; tags that
    training never saw become O here (gold is scored from the file, not from these ids).
    `trust`, one per sentence, is given to each of its tokens; `soft`, one [length, tags]
    array per sentence, are soft tag targets. With a lexicon in `vocabs`, each sentence's
    tokens are matched against it on their own (a match never spans two sentences)."""
    groups = batching.units(
        [s.doc_id for s in sents],
        [len(s) for s in sents],
        cfg.data.context,
        cfg.data.max_context_tokens,
    )
    tokens = batching.join_units([s.tokens for s in sents], groups)
    tag_ids = None
    if source_scheme is not None:
        known = vocabs.tags
        seqs = [
            [t if t in known else "O" for t in ts]
            for ts in to_scheme(sents, cfg.data.scheme, source_scheme)
        ]
        tag_ids = batching.join_units(seqs, groups)
    token_trust = None
    if trust is not None:
        token_trust = batching.join_units(
            [[t] * len(s) for s, t in zip(sents, trust, strict=True)], groups
        )
    lexicon = None
    if vocabs.lexicon is not None:
        lexicon = _join_rows([vocabs.lexicon.match(s.tokens) for s in sents], groups)
    rows = _join_rows(soft, groups) if soft is not None else None
    encoded = batching.encode(tokens, vocabs, tag_ids, token_trust, lexicon, rows)
    return Split(encoded, groups, [len(s) for s in sents])


def _join_rows(rows: Sequence[np.ndarray], groups: list[list[int]]) -> list[np.ndarray]:
    """Per-sentence [length, columns] arrays joined into one per unit."""
    return [np.concatenate([rows[i] for i in g]) for g in groups]


@torch.no_grad()
def predict_ids(
    model: RNNTagger, split: Split, batches: list[batching.Batch], device: torch.device
) -> list[list[int]]:
    """Tag ids per sentence, in dataset order (the model's scheme; see `decode_tags`)."""
    model.eval()
    rows: list[list[int]] = [[] for _ in split.groups]
    for b in batches:
        ids = model.decode(b.to(device)).cpu().numpy()
        for row, i, length in zip(ids, b.index.tolist(), b.lengths.tolist(), strict=True):
            rows[i] = row[:length].tolist()
    return batching.split_units(rows, split.groups, split.lengths)


@torch.inference_mode()
def sentence_marginals(
    model: RNNTagger, split: Split, batches: list[batching.Batch], device: torch.device
) -> list[np.ndarray]:
    """P(tag | text) per token of each sentence, [length, tags] float32 arrays in dataset
    order: the CRF's marginals by forward-backward, or the softmax of a softmax head."""
    model.eval()
    rows: list[Any] = [np.zeros(0)] * len(split.groups)
    for b in batches:
        em = model.emissions(b.to(device))
        mask = b.mask.to(device)
        marg = model.crf.marginals(em, mask) if model.crf is not None else em.softmax(2)
        out = marg.float().cpu().numpy()
        for row, i, n in zip(out, b.index.tolist(), b.lengths.tolist(), strict=True):
            rows[i] = row[:n]
    return [np.asarray(x) for x in batching.split_units(rows, split.groups, split.lengths)]


def decode_tags(
    ids: Sequence[Sequence[int]], vocabs: Vocabs, scheme: str, output_scheme: str
) -> list[list[str]]:
    """Predicted tag ids (in the model's `scheme`) as tags in `output_scheme`."""
    names = vocabs.tags.itos
    return [tags.convert([names[i] for i in row], output_scheme, scheme) for row in ids]


def evaluate_split(
    model: RNNTagger,
    split: Split,
    batches: list[batching.Batch],
    sents: Sequence[Sentence],
    vocabs: Vocabs,
    cfg: Config,
    source_scheme: str,
    device: torch.device,
    report: bool = False,
) -> dict[str, Any]:
    """Entity scores (conlleval) on predictions mapped back to the file's own scheme."""
    ids = predict_ids(model, split, batches, device)
    pred = decode_tags(ids, vocabs, cfg.data.scheme, source_scheme)
    gold = [list(_gold(s)) for s in sents]
    result: dict[str, Any] = {"entity": entity_scores(gold, pred).to_dict()}
    if report:
        text, table = token_report(gold, pred)
        result["token"] = {
            "accuracy": result["entity"]["accuracy"],
            "report": table,
            "report_text": text,
        }
    result["predictions"] = pred
    return result
