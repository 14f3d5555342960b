"""The full-data study's machinery: the runner (benchmarks/study_full.py) on tiny data, its
queue rules, and the page generator (benchmarks/study_full_page.py) on a hand-made CSV set."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from conftest import tiny_sections, to_toml

REPO = Path(__file__).parents[1]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


study = _load("study_full")
page = _load("study_full_page")


def _sweeps(tmp: Path, base: str = "../tiny.toml") -> Path:
    d = tmp / "sweeps"
    d.mkdir()
    (d / "study.toml").write_text('[set]\n"train.epochs" = 1\n"train.threads" = 1\n')
    (d / "00_default.toml").write_text(f'base = "{base}"\nseeds = [1, 2]\npriority = 0\n')
    (d / "01_lr.toml").write_text(
        f'base = "{base}"\nseeds = [1, 2]\npriority = 2\ngroup = "training"\n'
        '[grid]\n"train.lr" = [0.003, 0.01]\n'
    )
    return d


# --- queue rules ------------------------------------------------------------------------------


def _row(sweep: str, level: dict, seed: int, dev: float) -> dict[str, str]:
    return {
        "sweep": sweep,
        "seed": str(seed),
        "level": json.dumps(level),
        "dev_f1": str(dev),
        "trained_for": sweep,
        "run_id": "x",
        "overrides": "{}",
    }


def test_an_edge_best_rate_grows_the_grid_one_step_at_a_time(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(to_toml(tiny_sections()))
    d = _sweeps(tmp_path)
    (d / "01_lr.toml").write_text(
        'base = "../tiny.toml"\nseeds = [1]\n[grid]\n"train.batch_size" = [8, 32]\n'
        '"train.lr" = [0.001, 0.002, 0.004]\n'
        '[extend]\nkey = "train.lr"\nfactor = 2.0\nmax_steps = 1\n'
    )
    sweep = study.read_sweep(d / "01_lr.toml")
    rows = [
        _row("01_lr", {"train.batch_size": 8, "train.lr": lr}, 1, dev)
        for lr, dev in ((0.001, 90.0), (0.002, 91.0), (0.004, 92.0))
    ]
    # batch 32 has no results yet: only batch 8's row (best at the top edge) grows
    assert study.extensions(sweep, study.levels(sweep, []), rows) == [
        {"train.batch_size": 8, "train.lr": 0.008}
    ]
    rows.append(_row("01_lr", {"train.batch_size": 8, "train.lr": 0.008}, 1, 93.0))
    levels = study.levels(sweep, rows)  # the extension is now a level of its own, and last
    assert sorted(lv["train.lr"] for lv in levels if lv["train.batch_size"] == 8) == [
        0.001,
        0.002,
        0.004,
        0.008,
    ]
    assert study.extensions(sweep, levels, rows) == []  # max_steps = 1 reached
    rows[1]["dev_f1"] = "99"  # best inside the range: nothing to add
    assert study.extensions(sweep, study.levels(sweep, rows[:3]), rows[:3]) == []


def test_a_grid_point_equal_to_the_default_is_the_same_run(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(to_toml(tiny_sections()))
    d = _sweeps(tmp_path)
    shared, sweeps = study.read_sweeps(d)
    jobs = study.build_queue(shared, {}, sweeps, {}, tmp_path / "res")
    ids = {(j.sweep.name, json.dumps(j.level), j.seed): j.rid for j in jobs}
    assert ids[("01_lr", '{"train.lr": 0.01}', 1)] == ids[("00_default", "{}", 1)]  # tiny's lr
    assert ids[("01_lr", '{"train.lr": 0.003}', 1)] != ids[("00_default", "{}", 1)]
    # a value the base leaves unset, spelled out at rnner's default, is the same run too
    base = sweeps[0].base
    assert study.run_key(base, {"model.locked_dropout": False}) == study.run_key(base, {})
    assert study.run_key(base, {"model.locked_dropout": True}) != study.run_key(base, {})
    with pytest.raises(study.StudyError, match="model.no_such_key"):
        study.run_key(base, {"model.no_such_key": 1})
    # seed 1 of every sweep before any seed 2
    assert [j.seed for j in jobs] == [1, 1, 1, 2, 2, 2]


def test_a_run_to_copy_is_not_counted_as_a_run_left(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(to_toml(tiny_sections()))
    shared, sweeps = study.read_sweeps(_sweeps(tmp_path))
    rid = study.build_queue(shared, {}, sweeps, {}, tmp_path)[0].rid  # the default's
    results = {
        "00_default": [
            {**_row("00_default", {}, seed, 90.0), "run_id": rid, "cpu_seconds": "100"}
            for seed in (1, 2)
        ]
    }
    jobs = study.build_queue(shared, {}, sweeps, results, tmp_path)
    assert len(jobs) == 4  # 01_lr: lr 0.003 to train, lr 0.01 (the default's) to copy
    est = study.estimate(sweeps, jobs, results, 1)
    assert est["runs_left"] == 2 and est["runs_trained"] == 2


def test_an_interrupted_run_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(to_toml(tiny_sections()))
    _, sweeps = study.read_sweeps(_sweeps(tmp_path))
    job = study.build_queue({}, {}, sweeps, {}, tmp_path)[0]
    out = tmp_path / "run"
    out.mkdir()
    assert "--resume" not in study.train_command(["rnner"], job, out)
    (out / "checkpoint.safetensors").write_bytes(b"")
    assert study.train_command(["rnner"], job, out) == [
        "rnner",
        "train",
        "--resume",
        str(out),
        "--quiet",
    ]


def test_a_bad_sweep_file_is_one_line_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "01_x.toml"
    bad.write_text('base = "missing.toml"\n')
    with pytest.raises(study.StudyError, match=r"01_x.toml: base 'missing.toml' does not exist"):
        study.read_sweep(bad)
    bad.write_text('base = "01_x.toml"\nseed = [1]\n')
    with pytest.raises(study.StudyError, match=r"01_x.toml: unknown key 'seed'"):
        study.read_sweep(bad)


def test_a_row_with_a_new_column_keeps_the_old_rows_aligned(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    study.append_row(path, ["a", "b"], {"a": 1, "b": 2})
    study.append_row(path, ["a", "c", "b"], {"a": 3, "b": 4, "c": 5})
    assert path.read_text() == "a,b,c\n1,2,\n3,4,5\n"


# --- the runner on tiny data ------------------------------------------------------------------


def _run(d: Path, tmp: Path, *more: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "study_full.py"),
            "--sweeps",
            str(d),
            "--results",
            str(tmp / "repo" / "docs" / "res"),
            "--runs",
            str(tmp / "runs"),
            "--lanes",
            "2",
            "--rnner",
            f"{sys.executable} -m rnner.cli",
            "--set",
            "data.max_sentences=30",
            *more,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout


def test_the_runner_records_every_run_once_and_skips_them_on_rerun(
    tmp_path: Path, conll_dir: Path
) -> None:
    cfg = tiny_sections(data={"data_dir": str(conll_dir.parent)})
    (tmp_path / "tiny.toml").write_text(to_toml(cfg))
    d = _sweeps(tmp_path)
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    _git(repo, "init", "-q")
    _git(
        repo,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "start",
    )
    (repo / "other.txt").write_text("staged work of someone else\n")
    _git(repo, "add", "other.txt")
    first = _run(d, tmp_path, "--commit")
    assert first.returncode == 0, first.stdout + first.stderr
    # a commit after each of the 4 runs, of the result files and the page only
    log = _git(repo, "log", "--format=%s").splitlines()
    assert len(log) == 5 and all(m.startswith("study-full: ") for m in log[:4])
    assert "(4 runs trained, 0 left)" in log[0]
    # (two runs that finish in the same poll are both in the first of their two commits, so
    # the CSV need not be in the last one: the four commits together hold it, and nothing else)
    committed = set(_git(repo, "log", "-4", "--name-only", "--format=").split())
    assert "docs/res/01_lr.csv" in committed, committed
    assert all(f.startswith("docs/res/") or f == "docs/hyperparameters-full.md" for f in committed)
    assert _git(repo, "diff", "--cached", "--name-only") == "other.txt\n"
    text = (repo / "docs" / "hyperparameters-full.md").read_text()
    assert "# Hyperparameter study on the full" in text
    res = repo / "docs" / "res"
    # 00_default seeds 1, 2 and 01_lr's lr 0.003 seeds 1, 2 trained; lr 0.01 is the default
    assert first.stdout.count(" start ") == 4
    rows = {
        name: list(csv.DictReader((res / f"{name}.csv").open())) for name in ("00_default", "01_lr")
    }
    assert len(rows["00_default"]) == 2 and len(rows["01_lr"]) == 4
    shared = [r for r in rows["01_lr"] if r["train.lr"] == "0.01"]
    assert [r["trained_for"] for r in shared] == ["00_default", "00_default"]
    assert [r["dev_f1"] for r in shared] == [r["dev_f1"] for r in rows["00_default"]]
    for r in rows["01_lr"]:
        assert r["epochs_run"] == "1" and len(r["dev_f1_by_epoch"].split()) == 1
        assert json.loads(r["overrides"])["data.max_sentences"] == 30
        assert (res / r["curve"]).is_file()
        assert float(r["cpu_seconds"]) > 0
    assert not list((tmp_path / "runs").glob("*/seed*/model.safetensors"))  # weights dropped
    before = {p.name: p.read_bytes() for p in res.glob("*.csv")}
    again = _run(d, tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert " start " not in again.stdout
    assert "0 runs left" in again.stdout
    assert {p.name: p.read_bytes() for p in res.glob("*.csv")} == before
    progress = json.loads((res / "progress.json").read_text())
    assert progress["runs_trained"] == 4 and progress["rows"] == 6


# --- the page ---------------------------------------------------------------------------------


def _fake_results(tmp: Path) -> tuple[Path, Path]:
    """Hand-made CSVs: a default, a grid with one complete better cell, an incomplete level."""
    (tmp / "tiny.toml").write_text(to_toml(tiny_sections()))
    d = _sweeps(tmp)
    (d / "10_dropout.toml").write_text(
        'title = "Dropout"\nbase = "../tiny.toml"\nseeds = [1, 2, 3]\n'
        '[grid]\n"model.dropout" = [0.0, 0.5]\n'
    )
    (d / "00_default.toml").write_text('base = "../tiny.toml"\nseeds = [1, 2, 3]\n')
    res = tmp / "res"
    sweeps = {s.name: s for s in study.read_sweeps(d)[1]}

    def add(
        sweep: str,
        level: dict,
        rid: str,
        seed: int,
        dev: float,
        test: float,
        trained_for: str | None = None,
    ) -> None:
        study.append_row(
            res / f"{sweep}.csv",
            study.columns(sweeps[sweep]),
            {
                "sweep": sweep,
                "run_id": rid,
                "seed": seed,
                "level": json.dumps(level),
                **{k: study.fmt_value(v) for k, v in level.items()},
                "overrides": "{}",
                "best_epoch": 2,
                "epochs_run": 3,
                "dev_f1": dev,
                "test_f1": test,
                "dev_f1_by_epoch": f"{dev - 2} {dev} {dev - 1}",
                "cpu_seconds": 60,
                "machine": "test CPU, 2 cores",
                "trained_for": trained_for or sweep,
            },
        )

    for seed, dev in zip((1, 2, 3), (94.0, 95.0, 96.0), strict=True):
        add("00_default", {}, "def", seed, dev, dev - 4)
        add("10_dropout", {"model.dropout": 0.5}, "def", seed, dev, dev - 4, "00_default")
    for seed, dev in zip((1, 2, 3), (95.0, 97.0, 99.0), strict=True):  # twice the spread
        add("10_dropout", {"model.dropout": 0.0}, "d0", seed, dev, dev - 4)
    for seed, dev in ((1, 90.0), (2, 91.0)):
        add("01_lr", {"train.lr": 0.003}, "lr3", seed, dev, dev - 4)
    return res, d


def test_the_page_compares_each_level_with_the_default(tmp_path: Path) -> None:
    res, d = _fake_results(tmp_path)
    out = page.write_page(res, d, tmp_path / "docs" / "hyperparameters-full.md", res)
    text = out.read_text()
    # dropout 0: dev 95, 97, 99 against 94, 95, 96: +2.00, Welch's t = 1.549 on 2.94 df
    # (Welch-Satterthwaite): p 0.221, where Student's test (pooled variance, 4 df) gives 0.196
    assert "| **0** | 97.00 ± 2.00 | 93.00 ± 2.00 | +2.00 | 0.221 | +2.00 | 0.221 | 3 |" in text
    assert "| 0.5 (default) | 95.00 ± 1.00 | 91.00 ± 1.00 | ref. |" in text
    assert (
        "**No level is significantly better than the default**: the best, 0, is +2.00 "
        "dev F1 (p = 0.221)"
    ) in text
    # 01_lr lacks the default's values: the default's own runs are its reference row
    assert "| **configs/conll03.toml (default)** | 95.00 ± 1.00 | 91.00 ± 1.00 | ref. |" in text
    assert "| 0.003 | 90.50 ± 0.71 | 86.50 ± 0.71 | -4.50 | 0.011 * |" in text
    assert "**Keep the default (configs/conll03.toml)**" in text
    assert "8 runs trained (11 result rows" in text  # copies of the default are not runs
    assert (res / "10_dropout.png").stat().st_size > 1000
    assert "](../res/10_dropout.png)" in text


def test_a_level_short_of_seeds_is_marked_and_never_judged(tmp_path: Path) -> None:
    res, d = _fake_results(tmp_path)
    rows = list(csv.DictReader((res / "10_dropout.csv").open()))
    kept = [r for r in rows if not (r["model.dropout"] == "0" and r["seed"] == "3")]
    with (res / "10_dropout.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(kept)
    text = page.write_page(res, d, tmp_path / "page.md", res).read_text()
    assert "| 0 (incomplete: 2 of 3 seeds) | 96.00 ± 1.41 |" in text
    assert "**Incomplete**: 1 of 2 levels have all their seeds" in text


def test_a_stopped_study_resumes_its_run_to_the_uninterrupted_result(
    tmp_path: Path, conll_dir: Path
) -> None:
    cfg = tiny_sections(data={"data_dir": str(conll_dir.parent), "max_sentences": 200})
    (tmp_path / "tiny.toml").write_text(to_toml(cfg))
    d = tmp_path / "sweeps"
    d.mkdir()
    (d / "study.toml").write_text('[set]\n"train.epochs" = 4\n"train.threads" = 1\n')
    (d / "00_default.toml").write_text('base = "../tiny.toml"\nseeds = [1]\n')
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [
        sys.executable,
        str(REPO / "benchmarks" / "study_full.py"),
        "--sweeps",
        str(d),
        "--results",
        str(tmp_path / "res"),
        "--runs",
        str(tmp_path / "runs"),
        "--lanes",
        "1",
        "--rnner",
        f"{sys.executable} -m rnner.cli",
    ]
    study_proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    deadline = time.monotonic() + 300
    while not list((tmp_path / "runs").glob("*/seed1/log.jsonl")):  # one epoch done
        assert time.monotonic() < deadline and study_proc.poll() is None
        time.sleep(0.5)
    study_proc.send_signal(signal.SIGTERM)
    out, _ = study_proc.communicate(timeout=120)
    assert study_proc.returncode == 130, out
    assert "stopped 00_default [base] seed 1" in out
    assert not (tmp_path / "res" / "00_default.csv").exists()
    run = next((tmp_path / "runs").glob("*/seed1"))
    assert (run / "checkpoint.safetensors").is_file() and not (run / "metrics.json").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"train --resume {run} --quiet" in (run / "train.log").read_text()
    row = next(csv.DictReader((tmp_path / "res" / "00_default.csv").open()))
    ref = tmp_path / "ref"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "rnner.cli",
            "train",
            str(tmp_path / "tiny.toml"),
            "--output",
            str(ref),
            "--quiet",
            "--seed",
            "1",
            "--set",
            "train.epochs=4",
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=300,
    )
    metrics = json.loads((ref / "metrics.json").read_text())
    assert row["dev_f1"] == f"{100 * metrics['dev']['entity']['f1']:.4f}"
    assert row["test_f1"] == f"{100 * metrics['test']['entity']['f1']:.4f}"
    assert json.loads((run / "study.json").read_text())["segments"] == 2
