"""The one process pool: results by job, failures and stops kept apart, cores shared out."""

import os

import pytest

from rnner.multirun import pool


def job(x):
    """Runs in a spawned worker (imported from this module by name)."""
    if x == "fail":
        raise ValueError("bad input")
    if x == "stop":
        raise KeyboardInterrupt  # what a SIGTERM outside training raises in a worker
    if x == "threads":
        return os.environ.get("OMP_NUM_THREADS")
    return x * x


def test_results_errors_and_stops_are_told_apart():
    seen = []
    out = pool.run(
        job,
        [(3,), ("fail",), ("stop",), ("threads",)],
        workers=1,
        threads=2,
        on_result=lambda i, v: seen.append((i, v)),
    )
    assert sorted(out.results) == [(0, 9), (3, "2")]  # the worker's BLAS threads are capped
    assert seen == out.results
    assert [(i, type(e).__name__, str(e)) for i, e in out.errors] == [
        (1, "ValueError", "bad input")
    ]
    assert out.stopped == [2] and not out.interrupted


def test_no_jobs_start_no_workers():
    assert pool.run(job, [], workers=4) == pool.Outcome()


@pytest.mark.parametrize(("cores", "workers", "threads"), [(8, 3, 2), (2, 4, 1), (16, 1, 16)])
def test_cores_are_shared_out(monkeypatch, cores, workers, threads):
    monkeypatch.setattr(pool, "cpu_count", lambda: cores)
    assert pool.share_cores(workers) == threads
