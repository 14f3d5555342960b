"""Multi-seed experiments: every seed runs once, the summary is mean ± std, reruns skip."""

import json
import statistics

from rnner.cli import main
from rnner.experiment import markdown, summarise


def _fake(seed: int, dev: float, test: float) -> dict:
    def split(f1: float) -> dict:
        return {"entity": {"f1": f1, "per_type": {"PER": {"f1": f1 + 0.01},
                                                  "LOC": {"f1": f1 - 0.01}}}}

    return {"seed": seed, "output": f"runs/x/seed{seed}", "wall_seconds": 10.0 * seed,
            "best_epoch": seed, "device": "cpu", "dev": split(dev), "test": split(test)}


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
    assert [json.loads((out / f"seed{s}" / "config.json").read_text())["train"]["seed"]
            for s in (1, 2)] == [1, 2]
    stamp = (out / "seed1" / "metrics.json").stat().st_mtime_ns
    assert main(args) == 0  # finished seeds are not trained again
    assert (out / "seed1" / "metrics.json").stat().st_mtime_ns == stamp
    assert "| test |" in capsys.readouterr().out


def test_experiment_keeps_the_users_thread_count(conll_dir, write_config, tmp_path,
                                                  monkeypatch):
    # Sharing the cores out among workers must not override an explicit train.threads: two
    # 2-thread runs on 2 cores crawled at a tenth of their speed.
    monkeypatch.setattr("rnner.experiment.os.cpu_count", lambda: 8)
    config = write_config(data={"max_sentences": 40}, train={"epochs": 1})
    out = tmp_path / "exp"
    assert main(["experiment", str(config), "--seeds", "1", "--workers", "1",
                 "--set", "train.threads=1", "--output", str(out)]) == 0
    assert json.loads((out / "seed1" / "config.json").read_text())["train"]["threads"] == 1
