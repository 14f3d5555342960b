"""Interrupted training resumes to exactly the uninterrupted result; same seed, same metrics."""

import json
import os
import signal

import pytest
from conftest import needs_conll

from rnner.config import Config
from rnner.training import Interrupted, fit

TINY = {
    "data": {"max_sentences": 120},
    "model": {"embeddings": "random", "hidden_size": 16, "char_hidden": 8, "casing_dim": 4},
    "train": {"epochs": 3, "batch_size": 16, "lr": 0.1, "seed": 7, "threads": 1},
}


@pytest.fixture
def conll_data():
    needs_conll()


def _log(run) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _metrics(run) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    m.pop("train_seconds")
    return m


def test_same_seed_gives_identical_metrics(tmp_path, conll_data):
    cfg = Config.from_dict(TINY)
    fit(cfg, tmp_path / "a", progress=False)
    fit(cfg, tmp_path / "b", progress=False)
    assert _metrics(tmp_path / "a") == _metrics(tmp_path / "b")
    strip = [{k: v for k, v in r.items() if "second" not in k and "_per_s" not in k}
             for r in _log(tmp_path / "a")]
    assert strip == [{k: v for k, v in r.items() if "second" not in k and "_per_s" not in k}
                     for r in _log(tmp_path / "b")]


@pytest.mark.parametrize("ema", [0.0, 0.99])
def test_interrupt_mid_epoch_then_resume_matches_uninterrupted(tmp_path, conll_data, ema):
    cfg = Config.from_dict({**TINY, "train": {**TINY["train"], "ema": ema}})
    fit(cfg, tmp_path / "full", progress=False)

    def interrupt_after_first_epoch(record: dict) -> None:
        if record["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGINT)  # lands in the next epoch's first batch

    with pytest.raises(Interrupted):
        fit(cfg, tmp_path / "cut", hooks=[interrupt_after_first_epoch], progress=False)
    assert len(_log(tmp_path / "cut")) == 1  # stopped inside epoch 2
    assert not (tmp_path / "cut" / "metrics.json").exists()
    fit(cfg, tmp_path / "cut", progress=False, resume=True)

    assert _metrics(tmp_path / "cut") == _metrics(tmp_path / "full")
    losses = [r["train_loss"] for r in _log(tmp_path / "cut")]
    assert losses == [r["train_loss"] for r in _log(tmp_path / "full")]


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, conll_data):
    with pytest.raises(FileNotFoundError, match="no checkpoint.safetensors"):
        fit(Config.from_dict(TINY), tmp_path, progress=False, resume=True)
