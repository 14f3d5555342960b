"""`rnner train --resume RUN_DIR` with options: more epochs (or patience) are applied, any
other change is refused with one line, never silently ignored (issue 25)."""

import json
from pathlib import Path

import pytest
from conftest import GOOD

from rnner.cli import main

DATA = ["--train", GOOD, "--dev", GOOD, "--test", GOOD]


def train(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in ("train", *argv, "--quiet")])
    out, err = capsys.readouterr()
    return code, out, err


def log(run: Path) -> list[dict]:
    """The log without its timings, which differ between runs."""
    return [
        {k: v for k, v in json.loads(line).items() if "second" not in k and "_per_s" not in k}
        for line in (run / "log.jsonl").read_text().splitlines()
    ]


def test_more_epochs_on_a_finished_run_continue_it_as_if_never_stopped(
    capsys, write_config, tmp_path
):
    config = write_config(train={"epochs": 3})
    assert train(capsys, config, *DATA, "--output", tmp_path / "full")[0] == 0
    assert train(capsys, config, *DATA, "--output", tmp_path / "cut", "--epochs", "2")[0] == 0
    assert len(log(tmp_path / "cut")) == 2

    code, out, err = train(capsys, "--resume", tmp_path / "cut", "--epochs", "3")
    assert (code, err) == (0, "")
    assert out.startswith("best epoch ")
    assert log(tmp_path / "cut") == log(tmp_path / "full")
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    cut = json.loads((tmp_path / "cut" / "metrics.json").read_text())
    assert {k: v for k, v in cut.items() if k != "train_seconds"} == {
        k: v for k, v in full.items() if k != "train_seconds"
    }
    assert json.loads((tmp_path / "cut" / "config.json").read_text())["train"]["epochs"] == 3


def test_more_patience_resumes_a_run_that_stopped_early(capsys, write_config, tmp_path):
    # lr 0: dev F1 never improves on epoch 1, so patience 1 stops the run after epoch 2.
    config = write_config(train={"epochs": 6, "lr": 0.0, "patience": 1})
    run = tmp_path / "run"
    assert train(capsys, config, *DATA, "--output", run)[0] == 0
    assert [r["epoch"] for r in log(run)] == [1, 2]

    assert train(capsys, "--resume", run, "--set", "train.patience=3")[0] == 0
    assert [r["epoch"] for r in log(run)] == [1, 2, 3, 4]

    assert train(capsys, "--resume", run)[0] == 0  # nothing new: stopped, patience spent
    assert [r["epoch"] for r in log(run)] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    "argv, key",
    [
        (["--set", "train.lr=0.5"], "train.lr"),
        (["--set", "model.hidden_size=8"], "model.hidden_size"),
        (["--seed", "3"], "train.seed"),
        (["--train", GOOD], "data.train"),
    ],
)
def test_other_changes_on_resume_are_refused_in_one_line(capsys, write_config, tmp_path, argv, key):
    config = write_config(train={"epochs": 1})
    run = tmp_path / "run"
    assert train(capsys, config, *DATA, "--output", run)[0] == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}

    code, out, err = train(capsys, "--resume", run, *argv)
    assert (code, out) == (2, "")
    assert err == (
        f"config {key}: cannot change when resuming a run (--resume takes only "
        "train.epochs and train.patience)\n"
    )
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_a_config_file_or_output_with_resume_is_refused(capsys, write_config, tmp_path):
    config = write_config(train={"epochs": 1})
    run = tmp_path / "run"
    assert train(capsys, config, *DATA, "--output", run)[0] == 0
    code, _, err = train(capsys, config, "--resume", run)
    assert code == 2
    assert err == (
        "config --resume: CONFIG.toml cannot be given with --resume RUN_DIR (the run "
        "directory holds its config and is the output)\n"
    )
    code, _, err = train(capsys, "--resume", run, "--output", tmp_path / "elsewhere")
    assert code == 2 and err.startswith("config --resume: --output cannot be given")
