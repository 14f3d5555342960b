"""Multi-seed experiments: every seed runs once, the summary is mean ± std, reruns skip."""

import json
import os
import signal
import statistics
import subprocess
import sys
import time

import pytest
from conftest import children, default_sigint, sigint_alone, stopped_by_signal, wait_gone

from rnner.cli import main
from rnner.config import Config
from rnner.experiment import markdown, summarise
from rnner.training import Interrupted, fit


def _fake(seed: int, dev: float, test: float) -> dict:
    def split(f1: float) -> dict:
        return {
            "entity": {"f1": f1, "per_type": {"PER": {"f1": f1 + 0.01}, "LOC": {"f1": f1 - 0.01}}}
        }

    return {
        "seed": seed,
        "output": f"runs/x/seed{seed}",
        "wall_seconds": 10.0 * seed,
        "best_epoch": seed,
        "device": "cpu",
        "dev": split(dev),
        "test": split(test),
    }


def test_summary_is_mean_and_sample_std_and_keeps_the_best_dev_run():
    runs = [_fake(1, 0.90, 0.85), _fake(2, 0.92, 0.84), _fake(3, 0.91, 0.86)]
    s = summarise(runs)
    assert s["test"]["f1"]["mean"] == statistics.fmean([0.85, 0.84, 0.86])
    assert s["test"]["f1"]["std"] == statistics.stdev([0.85, 0.84, 0.86])
    assert (s["dev"]["f1"]["min"], s["dev"]["f1"]["max"]) == (0.90, 0.92)
    assert s["dev"]["per_type"]["PER"]["mean"] == statistics.fmean([0.91, 0.93, 0.92])
    assert s["best_dev_run"] == "runs/x/seed2"  # best dev, not best test
    text = markdown(s, "title")
    assert "| test | 85.00 ± 1.00 | 84.00 | 86.00 |" in text
    assert "| 2 | 2 | 92.00 | 84.00 | 20 |" in text


def test_experiment_command_runs_each_seed_once(conll_dir, write_config, tmp_path, capsys):
    config = write_config(data={"max_sentences": 60}, train={"epochs": 1})
    out = tmp_path / "exp"
    args = ["experiment", str(config), "--seeds", "2", "--workers", "1", "--output", str(out)]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds"] == [1, 2] and summary["n"] == 2
    assert [
        json.loads((out / f"seed{s}" / "config.json").read_text())["train"]["seed"] for s in (1, 2)
    ] == [1, 2]
    stamp = (out / "seed1" / "metrics.json").stat().st_mtime_ns
    assert main(args) == 0  # finished seeds are not trained again
    assert (out / "seed1" / "metrics.json").stat().st_mtime_ns == stamp
    assert "| test |" in capsys.readouterr().out


def test_experiment_keeps_the_users_thread_count(conll_dir, write_config, tmp_path, monkeypatch):
    # Sharing the cores out among workers must not override an explicit train.threads: two
    # 2-thread runs on 2 cores crawled at a tenth of their speed.
    monkeypatch.setattr("rnner.multirun.pool.cpu_count", lambda: 8)
    config = write_config(data={"max_sentences": 40}, train={"epochs": 1})
    out = tmp_path / "exp"
    assert main(_experiment_args(config, out, 1, 1)) == 0
    assert json.loads((out / "seed1" / "config.json").read_text())["train"]["threads"] == 1


def _interrupted_seed(config, run_dir):
    """Train seed 1 as the experiment would, stopped by SIGINT early in epoch 2."""

    def stop(record: dict) -> None:
        if record["epoch"] == 1:
            os.kill(os.getpid(), signal.SIGINT)

    cfg = Config.load(config, ["train.seed=1", "train.threads=1"])
    with pytest.raises(Interrupted):
        fit(cfg, run_dir, hooks=[stop], progress=False)
    return cfg


def test_rerun_resumes_an_interrupted_seed_to_the_uninterrupted_result(
    conll_dir, write_config, tmp_path
):
    config = write_config(data={"max_sentences": 80}, train={"epochs": 2})
    out = tmp_path / "exp"
    cfg = _interrupted_seed(config, out / "seed1")
    fit(cfg, tmp_path / "whole", progress=False)
    assert main(_experiment_args(config, out, 1, 1)) == 0
    log = [json.loads(line) for line in (out / "seed1" / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]  # epoch 1 was not trained again

    def metrics(run):
        m = json.loads((run / "metrics.json").read_text())
        m.pop("train_seconds")
        return m

    assert metrics(out / "seed1") == metrics(tmp_path / "whole")


def test_an_unfinished_seed_of_another_config_is_not_resumed(
    conll_dir, write_config, tmp_path, capsys
):
    config = write_config(data={"max_sentences": 80}, train={"epochs": 2})
    out = tmp_path / "exp"
    _interrupted_seed(config, out / "seed1")
    assert main([*_experiment_args(config, out, 1, 1), "--set", "train.lr=0.5"]) == 2
    err = capsys.readouterr().err
    assert "holds an unfinished run of another config" in err and "seed1" in err


def _experiment_args(config, out, seeds: int, workers: int) -> list[str]:
    """`rnner experiment` on one thread per seed (2-thread runs on 2 cores crawl)."""
    return [
        "experiment",
        str(config),
        "--seeds",
        str(seeds),
        "--workers",
        str(workers),
        "--set",
        "train.threads=1",
        "--output",
        str(out),
    ]


def _experiment_argv(config, out, seeds: int, workers: int) -> list[str]:
    return [sys.executable, "-m", "rnner.cli", *_experiment_args(config, out, seeds, workers)]


def _experiment_training(config, out, seeds: int, workers: int):
    """`rnner experiment` started, returned with its workers once each is training a seed."""
    parent = subprocess.Popen(
        _experiment_argv(config, out, seeds, workers),
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,
    )
    deadline = time.monotonic() + 180
    while not all((out / f"seed{s}" / "log.jsonl").exists() for s in range(1, workers + 1)):
        if time.monotonic() > deadline or parent.poll() is not None:
            parent.kill()
            pytest.fail("the seeds did not start")
        time.sleep(0.05)
    return parent, children(parent.pid)


def _rerun_finishes(config, out, seeds: int, workers: int, epochs: int) -> None:
    """The same command again: every seed ends, each epoch trained once."""
    done = subprocess.run(
        _experiment_argv(config, out, seeds, workers), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "summary.json").read_text())["n"] == seeds
    for s in range(1, seeds + 1):
        log = [
            json.loads(line)["epoch"]
            for line in (out / f"seed{s}" / "log.jsonl").read_text().splitlines()
        ]
        assert log == list(range(1, epochs + 1))


# Epochs of 60 sentences take a fraction of a second: 25 of them leave the signal, sent once
# every worker has logged epoch 1, seconds to land mid-training, and keep the rerun short.
ENDLESS = {"data": {"max_sentences": 60}, "train": {"epochs": 25, "patience": 0}}


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to find the workers")
def test_killing_the_experiment_stops_its_workers_with_a_checkpoint(
    conll_dir, write_config, tmp_path
):
    config = write_config(**ENDLESS)
    out = tmp_path / "exp"
    parent, workers = _experiment_training(config, out, seeds=1, workers=1)
    assert workers
    parent.send_signal(signal.SIGTERM)  # the pool stops its seeds, as SIGINT would
    parent.wait(timeout=30)
    wait_gone(workers, 60)
    assert stopped_by_signal(out / "seed1")  # a mid-epoch checkpoint: the worker's handler
    assert not (out / "seed1" / "metrics.json").exists()
    _rerun_finishes(config, out, seeds=1, workers=1, epochs=25)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to find the workers")
def test_sigkill_to_the_experiment_stops_its_workers_with_a_checkpoint(
    conll_dir, write_config, tmp_path
):
    """SIGKILL leaves the experiment no say: each worker must notice its parent is gone, stop
    through training's signal handler (a mid-epoch checkpoint) and exit, not train on."""
    config = write_config(**ENDLESS)
    out = tmp_path / "exp"
    parent, workers = _experiment_training(config, out, seeds=2, workers=2)
    assert workers
    parent.kill()
    parent.wait(timeout=30)
    wait_gone(workers, 60)
    for s in (1, 2):
        assert stopped_by_signal(out / f"seed{s}"), s
        assert not (out / f"seed{s}" / "metrics.json").exists()
    _rerun_finishes(config, out, seeds=2, workers=2, epochs=25)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to find the workers")
def test_sigint_to_the_experiment_alone_stops_every_seed_with_a_checkpoint(
    conll_dir, write_config, tmp_path
):
    """`kill -INT` reaches the experiment process only (Ctrl-C signals the whole group): it
    must still stop its seeds, not wait for them to finish."""
    config = write_config(**ENDLESS)
    out = tmp_path / "exp"
    parent, workers = _experiment_training(config, out, seeds=3, workers=2)
    status, last = sigint_alone(parent, workers)
    assert status == 130
    assert last == "interrupted (seed 1, seed 2, seed 3); rerun the same command to resume"
    for s in (1, 2):  # stopped in training by the signal handler: resumable
        assert stopped_by_signal(out / f"seed{s}")
        assert not (out / f"seed{s}" / "metrics.json").exists()
    assert not (out / "seed3").exists()  # never started
    _rerun_finishes(config, out, seeds=3, workers=2, epochs=25)
