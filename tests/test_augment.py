"""Training on perturbed text: off changes nothing, on is redrawn per epoch and resumes exactly."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

from rnner import augment
from rnner.config import Config, ConfigError
from rnner.pipeline import encode_split, load_corpus
from rnner.training import Interrupted, fit

TINY = {
    "data": {"max_sentences": 120},
    "model": {"embeddings": "random", "hidden_size": 16, "char_hidden": 8, "casing_dim": 4},
    "train": {"epochs": 3, "batch_size": 16, "lr": 0.1, "seed": 7, "threads": 1},
}
AUGMENTED = {
    **TINY,
    "data": {**TINY["data"], "case_augment": 0.5, "typo_augment": 0.1, "mention_augment": 0.3},
}


@pytest.fixture
def corpus_and_vocabs(conll_dir):
    from rnner.training import build_model

    cfg = Config.from_dict(AUGMENTED)
    corpus = load_corpus(cfg)
    _, vocabs, _ = build_model(cfg, corpus, np.random.default_rng(1))
    return cfg, corpus, vocabs


def _tokens(data) -> list[list[tuple]]:
    """What the network reads of each sentence: word id, casing class and characters of
    every token, and the tags."""
    t = data.table
    out = []
    for start, n in zip(data.offsets, data.lengths, strict=True):
        rows = data.tokens[start : start + n]
        out.append(
            [
                (t.words[r], t.casing[r], tuple(t.chars[r][: t.char_lengths[r]]), tag)
                for r, tag in zip(rows, data.tags[start : start + n], strict=True)
            ]
        )
    return out


def test_off_is_the_very_same_data(corpus_and_vocabs):
    _, corpus, vocabs = corpus_and_vocabs
    cfg = Config.from_dict(TINY)
    base = encode_split(corpus.train, vocabs, cfg, corpus.scheme)
    data, sizes = augment.epoch_data(cfg, corpus, vocabs, 1, base)
    assert data is base.data
    assert sizes.tolist() == [1] * len(corpus.train)


def test_on_is_redrawn_per_epoch_and_deterministic(corpus_and_vocabs):
    cfg, corpus, vocabs = corpus_and_vocabs
    base = encode_split(corpus.train, vocabs, cfg, corpus.scheme)
    one, _ = augment.epoch_data(cfg, corpus, vocabs, 1, base)
    again, _ = augment.epoch_data(cfg, corpus, vocabs, 1, base)
    two, _ = augment.epoch_data(cfg, corpus, vocabs, 2, base)
    assert _tokens(one) == _tokens(again)
    assert _tokens(one) != _tokens(two)
    assert _tokens(one) != _tokens(base.data)


def test_keys_are_checked():
    with pytest.raises(ConfigError, match=r"config data.case_augment: 1.5 is out of range"):
        Config.from_dict({"data": {"case_augment": 1.5}})


def _log(run) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _metrics(run) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    m.pop("train_seconds")
    return m


def test_resume_with_augmentation_matches_uninterrupted(tmp_path, conll_dir):
    cfg = Config.from_dict(AUGMENTED)
    fit(cfg, tmp_path / "full", progress=False)
    plain = Config.from_dict(TINY)
    fit(plain, tmp_path / "plain", progress=False)
    losses = [r["train_loss"] for r in _log(tmp_path / "full")]
    assert losses != [r["train_loss"] for r in _log(tmp_path / "plain")]

    def interrupt_after_first_epoch(record: dict) -> None:
        if record["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGINT)  # lands in the next epoch's first batch

    with pytest.raises(Interrupted):
        fit(cfg, tmp_path / "cut", hooks=[interrupt_after_first_epoch], progress=False)
    fit(cfg, tmp_path / "cut", progress=False, resume=True)
    assert _metrics(tmp_path / "cut") == _metrics(tmp_path / "full")
    assert [r["train_loss"] for r in _log(tmp_path / "cut")] == losses
