"""Trials per hour of 1 and 2 `rnner tune` processes sharing one study on PostgreSQL.

    python benchmarks/tune_workers.py [--sweep configs/sweeps/smoke.toml] [--trials 6]
        [--repeats 2] [--threads 1] [--storage postgresql://USER@HOST:PORT]

Each process is started as a separate machine would run it (its own `--output`, the same
`--storage` and `--study`), on a fresh database per measurement. Without `--storage` a
throwaway server is started as the tests do (tests/pgserver.py; needs Debian's postgresql).
Wall time runs from starting the processes to the last one exiting, imports included.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(sweep: Path, url: str, processes: int, trials: int, threads: int, work: Path) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rnner.cli",
                "tune",
                str(sweep),
                "--storage",
                url,
                "--study",
                "bench",
                "--trials",
                str(trials),
                "--output",
                str(work / f"p{i}"),
                "--quiet",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        for i in range(processes)
    ]
    codes = [p.wait() for p in procs]
    seconds = time.perf_counter() - start
    if any(codes):
        raise SystemExit(f"rnner tune exited with {codes}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", type=Path, default=ROOT / "configs" / "sweeps" / "smoke.toml")
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument(
        "--storage",
        help="postgresql://USER@HOST:PORT of a server to use "
        "(a database per measurement is created there)",
    )
    args = ap.parse_args(argv)

    server = None
    if args.storage:
        base = args.storage.rstrip("/")

        def new_db() -> str:
            import psycopg

            name = f"bench_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
                conn.execute(f"CREATE DATABASE {name}")
            return f"{base}/{name}"
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        from pgserver import PostgresServer

        server = PostgresServer()
        server.init()
        server.start()
        new_db = server.new_database
    try:
        times: dict[int, list[float]] = {1: [], 2: []}
        for r in range(args.repeats):
            for n in (1, 2):
                with tempfile.TemporaryDirectory(prefix="rnner-bench-") as work:
                    s = run(args.sweep, new_db(), n, args.trials, args.threads, Path(work))
                times[n].append(s)
                print(
                    f"repeat {r + 1}: {n} process(es): {args.trials} trials in {s:.1f} s",
                    flush=True,
                )
    finally:
        if server is not None:
            server.close()
    print(
        f"\n{args.sweep.name}, {args.trials} trials, {args.threads} thread(s) per process, "
        f"{os.cpu_count()} CPUs, median of {args.repeats}\n"
    )
    print("| processes | wall s (median) | trials per hour | speed-up |")
    print("|---|---|---|---|")
    base_s = statistics.median(times[1])
    for n in (1, 2):
        s = statistics.median(times[n])
        print(f"| {n} | {s:.1f} | {args.trials * 3600 / s:.0f} | {base_s / s:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
