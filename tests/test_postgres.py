"""Sweeps on a real PostgreSQL server (the `postgres` fixture): URLs, drivers, workers that
start together on a fresh database, a worker killed mid-trial, and a server that goes away."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from rnner import storage as storage_mod
from rnner.cli import main
from rnner.storage import StorageError, open_storage, resolve_url

SMALL = Path(__file__).resolve().parent / "data" / "good" / "small.txt"


def sweep_text(epochs: int, trials: int) -> str:
    """Three sentences and a tiny model: an epoch takes a few milliseconds."""
    return f"""
trials = {trials}
seeds = [1]

[set]
"data.train" = "{SMALL}"
"data.dev" = "{SMALL}"
"data.test" = "{SMALL}"
"model.embeddings" = "random"
"model.word_dim" = 8
"model.casing_dim" = 0
"model.char_dim" = 4
"model.char_hidden" = 4
"model.hidden_size" = 8
"train.epochs" = {epochs}
"train.patience" = 0
"train.threads" = 1

[sampler]
type = "random"
seed = 3

[search."train.lr"]
type = "float"
low = 0.01
high = 0.5
log = true

[search."train.batch_size"]
choices = [1, 2, 3]
"""


def write_sweep(tmp_path: Path, epochs: int, trials: int) -> Path:
    path = tmp_path / "sweep.toml"
    path.write_text(sweep_text(epochs, trials), encoding="utf-8")
    return path


def tune_proc(
    sweep: Path, url: str, out: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """`rnner tune` as another machine would run it: its own process and output directory."""
    cmd = [
        sys.executable,
        "-m",
        "rnner.cli",
        "tune",
        str(sweep),
        "--storage",
        url,
        "--study",
        "shared",
        "--output",
        str(out),
        *extra,
    ]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def finish(proc: subprocess.Popen[str], timeout: float = 90) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"rnner tune hung for {timeout} s:\n{out}\n{err}")
    return proc.returncode, out, err


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def load(url: str) -> optuna.Study:
    return optuna.load_study(study_name="shared", storage=open_storage(url))


# --- URLs and drivers (no server needed) ------------------------------------------------------


@pytest.mark.parametrize(
    "installed, expected",
    [
        ({"psycopg", "psycopg2"}, "postgresql+psycopg://u:pw@h:5/db"),
        ({"psycopg2"}, "postgresql+psycopg2://u:pw@h:5/db"),
        ({"psycopg"}, "postgresql+psycopg://u:pw@h:5/db"),
    ],
)
def test_postgresql_urls_use_the_installed_driver(monkeypatch, installed, expected):
    monkeypatch.setattr(storage_mod, "_installed", lambda module: module in installed)
    assert resolve_url("postgresql://u:pw@h:5/db") == expected
    assert resolve_url("postgres://u:pw@h:5/db") == expected
    assert resolve_url("sqlite:///x.db") == "sqlite:///x.db"


def test_no_driver_is_one_line_that_says_what_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(storage_mod, "_installed", lambda module: False)
    with pytest.raises(StorageError, match=r'pip install "rnner\[postgres\]"'):
        resolve_url("postgresql+psycopg2://u@h/db")
    sweep = write_sweep(tmp_path, epochs=1, trials=1)
    code = main(
        [
            "tune",
            str(sweep),
            "--storage",
            "postgresql://u:secret@127.0.0.1:9/db",
            "--output",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        'storage: postgresql:// needs a PostgreSQL driver: pip install "rnner[postgres]"\n'
    )


# --- against the server -----------------------------------------------------------------------


def _open_together(url: str, barrier: mp.synchronize.Barrier, queue: mp.Queue) -> None:
    try:
        barrier.wait(timeout=60)
        study = optuna.create_study(
            storage=open_storage(url),
            study_name="shared",
            direction="maximize",
            load_if_exists=True,
        )
        queue.put(("ok", study._study_id))  # noqa: SLF001
    except BaseException as e:  # reported to the test, whatever it is
        queue.put(("error", f"{type(e).__name__}: {e}"))


def test_workers_opening_a_fresh_database_together_all_join_one_study(postgres):
    url = postgres.new_database()
    ctx = mp.get_context("fork")  # optuna is imported already: quick to start
    n = 4
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_open_together, args=(url, barrier, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=90) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert [r[0] for r in results] == ["ok"] * n, results
    assert len({r[1] for r in results}) == 1  # one study, joined by all


def test_two_machines_share_one_study_and_finish_exactly_the_target(postgres, tmp_path):
    url = postgres.new_database()
    sweep = write_sweep(tmp_path, epochs=3, trials=6)
    outs = [tmp_path / "a", tmp_path / "b"]
    procs = [tune_proc(sweep, url, out, "--quiet") for out in outs]
    results = [finish(p) for p in procs]
    assert [r[0] for r in results] == [0, 0], results

    study = load(url)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 6
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    # Each trial trained once, in one machine's output directory.
    for t in complete:
        where = [out for out in outs if (out / "trials" / f"{t.number:04d}").is_dir()]
        assert len(where) == 1, (t.number, where)
        assert t.user_attrs["run_dir"] == str(where[0] / "trials" / f"{t.number:04d}")
    trained = [p for out in outs for p in out.glob("trials/*/seed-1/metrics.json")]
    assert len(trained) == 6
    assert len({t.user_attrs["worker"]["pid"] for t in complete}) == 2  # both took trials


def test_a_worker_killed_mid_trial_is_failed_and_retried_by_the_other(postgres, tmp_path):
    url = postgres.new_database()
    sweep = write_sweep(tmp_path, epochs=40, trials=3)
    a = tune_proc(sweep, url, tmp_path / "a", "--quiet")
    try:
        wait_for(
            lambda: list((tmp_path / "a").glob("trials/*/seed-1/log.jsonl")),
            60,
            "the first worker to start training",
        )
    finally:
        os.kill(a.pid, signal.SIGKILL)  # mid-trial: nothing of it runs again
        a.communicate(timeout=30)
    killed = [t for t in load(url).trials if t.state == TrialState.RUNNING]
    assert len(killed) == 1 and killed[0].user_attrs["worker"]["pid"] == a.pid

    b = tune_proc(sweep, url, tmp_path / "b")
    code, out, err = finish(b)
    assert code == 0, err
    assert f"trial {killed[0].number:4d} was abandoned by its worker: failed, retrying" in out

    trials = {t.number: t for t in load(url).trials}
    dead = trials[killed[0].number]
    assert dead.state == TrialState.FAIL
    assert dead.user_attrs["error"] == "abandoned: its worker stopped"
    retries = [t for t in trials.values() if t.user_attrs.get("retry_of") == dead.number]
    assert len(retries) == 1
    assert retries[0].state == TrialState.COMPLETE and retries[0].params == dead.params
    assert retries[0].user_attrs["worker"]["pid"] == b.pid
    assert sum(t.state == TrialState.COMPLETE for t in trials.values()) == 3


def test_a_server_restart_during_a_trial_is_survived(postgres, tmp_path):
    url = postgres.new_database()
    sweep = write_sweep(tmp_path, epochs=150, trials=1)
    proc = tune_proc(sweep, url, tmp_path / "out", "--quiet")
    log = tmp_path / "out" / "trials" / "0000" / "seed-1" / "log.jsonl"
    try:
        wait_for(log.is_file, 60, "training to start")
        postgres.stop("fast")  # every connection is dropped
        time.sleep(1.0)
        postgres.start()
    finally:
        code, _, err = finish(proc)
    assert code == 0, err
    epochs = len(log.read_text().splitlines()) if log.is_file() else None
    trial = load(url).trials[0]
    assert trial.state == TrialState.COMPLETE
    assert trial.user_attrs["epochs_run"] == [150]
    assert epochs in (None, 150)


def test_a_server_that_stays_down_fails_in_one_line_not_a_hang(postgres, tmp_path):
    url = postgres.new_database()
    sweep = write_sweep(tmp_path, epochs=100000, trials=1)
    proc = tune_proc(
        sweep, url, tmp_path / "out", "--quiet", env={storage_mod.RETRY_SECONDS_ENV: "2"}
    )
    try:
        wait_for(
            (tmp_path / "out" / "trials" / "0000" / "seed-1" / "log.jsonl").is_file,
            60,
            "training to start",
        )
        postgres.stop("fast")
        started = time.monotonic()
        code, _, err = finish(proc, timeout=60)
        seconds = time.monotonic() - started
    finally:
        if not postgres.running():
            postgres.start()
    assert code == 2, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"storage: lost the connection to {resolve_url(url)} for 2 s (")
    assert last.endswith("rerun the same command to resume once the database is back")
    assert "Traceback" not in err
    assert seconds < 30
