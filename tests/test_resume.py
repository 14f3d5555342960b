"""Interrupted training resumes to exactly the uninterrupted result, whatever the config keeps
between epochs (weight average, plateau schedule, document context). Same seed, same metrics
across two processes: tests/test_guarantees.py."""

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


def _with(**sections) -> dict:
    return {name: {**TINY.get(name, {}), **sections.get(name, {})} for name in {*TINY, *sections}}


NO_ENTITIES = "EU NNP I-NP O\nrejects VBZ I-VP O\n\nPeter NNP I-NP O\n"

# name -> (config, the epoch after which the signal comes). The plateau run's dev has no
# entities, so its F1 is 0 every epoch and the cut comes after epoch 3, right after the
# resume: only a restored scheduler knows that epochs 2 and 3 both stalled.
VARIANTS = {
    "plain": (TINY, 1),
    "ema": (_with(train={"ema": 0.99}), 1),
    "plateau": (_with(train={"schedule": "plateau", "gamma": 0.5, "patience": 0}), 2),
    "document": (
        _with(
            data={"context": "document", "max_context_tokens": 120},
            model={"repeat_pooling": True, "dropout": 0.3},
        ),
        1,
    ),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_interrupt_mid_epoch_then_resume_matches_uninterrupted(tmp_path, conll_data, variant):
    sections, stop_after = VARIANTS[variant]
    if variant == "plateau":
        dev = tmp_path / "dev.txt"
        dev.write_text(NO_ENTITIES, encoding="utf-8")
        sections = _with(**{**sections, "data": {"dev": str(dev)}})
    cfg = Config.from_dict(sections)
    fit(cfg, tmp_path / "full", progress=False)

    def interrupt(record: dict) -> None:
        if record["epoch"] == stop_after:
            os.kill(os.getpid(), signal.SIGINT)  # lands in the next epoch's first batch

    with pytest.raises(Interrupted):
        fit(cfg, tmp_path / "cut", hooks=[interrupt], progress=False)
    assert len(_log(tmp_path / "cut")) == stop_after  # stopped inside the next epoch
    assert not (tmp_path / "cut" / "metrics.json").exists()
    fit(cfg, tmp_path / "cut", progress=False, resume=True)

    assert _metrics(tmp_path / "cut") == _metrics(tmp_path / "full")
    for key in ("train_loss", "lr", "dev_f1"):
        assert [r[key] for r in _log(tmp_path / "cut")] == [r[key] for r in _log(tmp_path / "full")]
    if variant == "plateau":
        assert [r["lr"] for r in _log(tmp_path / "cut")] == [0.1, 0.1, 0.05]


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, conll_data):
    with pytest.raises(FileNotFoundError, match="no checkpoint.safetensors"):
        fit(Config.from_dict(TINY), tmp_path, progress=False, resume=True)
