"""Warm start (`train.init`, `rnner train --init`): the network begins from a run's weights,
rows of shared words by their string, and a run it cannot continue is refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import SESSION_SETS, tiny_sections, to_toml

from rnner.cli import main
from rnner.config import Config, ConfigError, apply_override
from rnner.pipeline import to_scheme
from rnner.runs import load_run
from rnner.training import prepare


def session_config(conll_dir: Path, *sets: str) -> Config:
    """The session run's config (tiny_run), with `sets` applied on top."""
    raw = tiny_sections(data={"data_dir": str(conll_dir.parent)})
    for item in [*SESSION_SETS, *sets]:
        apply_override(raw, item)
    return Config.from_dict(raw)


def test_same_data_starts_from_every_weight(conll_dir: Path, tiny_run: Path) -> None:
    old, old_vocabs, _, _ = load_run(tiny_run)
    setup = prepare(session_config(conll_dir, f"train.init={json.dumps(str(tiny_run))}"))
    assert setup.vocabs.words.itos == old_vocabs.words.itos  # same data, same vocabulary
    assert setup.info["init_words"] == len(old_vocabs.words)
    assert setup.info["init_chars"] == len(old_vocabs.chars)
    new = setup.model.state_dict()
    for name, tensor in old.state_dict().items():
        assert torch.equal(new[name], tensor), name
    cold = prepare(session_config(conll_dir)).model.state_dict()
    assert not torch.equal(cold["proj.weight"], new["proj.weight"])


def test_other_data_copies_rows_by_word(conll_dir: Path, tiny_run: Path) -> None:
    old, old_vocabs, _, _ = load_run(tiny_run)
    # Fewer training sentences: a smaller vocabulary whose ids differ from the run's, and
    # fewer tags (no I-LOC in the first 40 sentences): the run's tags are kept.
    cfg = session_config(
        conll_dir, "data.max_sentences=40", f"train.init={json.dumps(str(tiny_run))}"
    )
    setup = prepare(cfg)
    assert setup.vocabs.tags.itos == old_vocabs.tags.itos
    trained = to_scheme(setup.corpus.train, "BIOES", setup.corpus.scheme)
    assert "I-LOC" not in {t for tags in trained for t in tags}
    words = setup.vocabs.words
    shared = [w for w in words.itos if w in old_vocabs.words.stoi]
    assert setup.info["init_words"] == len(shared) < len(old_vocabs.words)
    moved = [w for w in shared if words.stoi[w] != old_vocabs.words.stoi[w]]
    assert moved  # the test means something only if some ids differ
    new_rows = setup.model.words.weight
    for w in moved[:20]:
        assert torch.equal(new_rows[words.stoi[w]], old.words.weight[old_vocabs.words.stoi[w]])


@pytest.mark.parametrize(
    ("override", "says"),
    [
        (
            "model.hidden_size=24",
            "encoder.forward_rnns.0.weight_ih_l0 has shape (128, 28) there and (96, 28)",
        ),
        ('data.scheme="IOB2"', "it tags in BIOES, this config in IOB2"),
        ("model.casing_dim=0", "its network differs from this config's (parameters ['casing"),
    ],
)
def test_a_run_it_cannot_continue_is_refused(
    conll_dir: Path, tiny_run: Path, override: str, says: str
) -> None:
    cfg = session_config(conll_dir, override, f"train.init={json.dumps(str(tiny_run))}")
    with pytest.raises(ConfigError) as e:
        prepare(cfg)
    assert str(e.value).startswith(f"config train.init: {tiny_run}: ")
    assert says in str(e.value)


def test_data_with_a_tag_the_run_lacks_is_refused(conll_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    argv = ["train", str(_write_tiny(conll_dir, tmp_path)), "--output", str(run), "--quiet"]
    argv += ["--set", "data.max_sentences=40", "--set", "train.epochs=1"]
    assert main(argv) == 0
    cfg = session_config(conll_dir, f"train.init={json.dumps(str(run))}")
    with pytest.raises(ConfigError, match=r"has tags \['I-LOC'\] that it lacks"):
        prepare(cfg)


def _write_tiny(conll_dir: Path, tmp_path: Path) -> Path:
    config = tmp_path / "tiny.toml"
    config.write_text(
        to_toml(tiny_sections(data={"data_dir": str(conll_dir.parent)})), encoding="utf-8"
    )
    return config


def test_cli_init_trains_and_records_the_start(
    conll_dir: Path, tiny_run: Path, tmp_path: Path
) -> None:
    config = _write_tiny(conll_dir, tmp_path)
    out = tmp_path / "tuned"
    argv = ["train", str(config), "--init", str(tiny_run), "--output", str(out), "--quiet"]
    for item in [*SESSION_SETS, "train.epochs=1"]:
        argv += ["--set", item]
    assert main(argv) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["init"] == str(tiny_run)
    run = json.loads((out / "run.json").read_text())
    assert len(run["init_sha256"]) == 64 and run["init_words"] > 0
    # One more epoch from a trained start beats the cold start's first epoch on dev.
    tuned = json.loads((out / "metrics.json").read_text())["dev"]["entity"]["f1"]
    first = json.loads((tiny_run / "log.jsonl").read_text().splitlines()[0])["dev_f1"]
    assert tuned > first
    # A resumed run keeps its own start: --init cannot be changed there.
    assert main(["train", "--resume", str(out), "--init", str(tiny_run)]) == 2
