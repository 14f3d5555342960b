"""The one process pool behind everything rnner trains in parallel: an experiment's seeds,
CrossWeigh's fold models and a sweep's workers.

Workers are spawned processes, each given a share of the cores. Stopping works the same for
every caller:

- Ctrl-C signals every process of the group: training in each worker writes its checkpoint and
  stops, and the pool's process stops waiting for new work.
- A SIGINT or SIGTERM to the pool's process alone (`kill -INT`, a scheduler's SIGTERM) sets the
  pool's stop event: every worker running a job sends itself SIGTERM, which training answers
  the same way, and jobs not started yet are cancelled.
- A pool process that is killed outright (SIGKILL) cannot pass anything on: each worker notices
  its parent is gone, stops its job the same way, and exits instead of training on as an orphan.

A job that stops this way raises `Stopped` in the worker (KeyboardInterrupt is turned into it);
the caller sees it in `Outcome.stopped`, and reruns resume from the checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import concurrent.futures as cf

WATCH_SECONDS = 0.5  # how often a worker checks its parent and the stop event


def cpu_count() -> int:
    """The cores this process may run on (its affinity mask: taskset, cgroup cpusets)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def share_cores(workers: int) -> int:
    """Torch threads per worker when `workers` share the cores: more threads than cores
    makes every run crawl."""
    return max(1, cpu_count() // max(1, workers))


class Stopped(Exception):
    """A job stopped by the pool (Ctrl-C, the stop event, a dead parent), or never started."""


@dataclass
class Outcome:
    """What became of the jobs: results by job index, in the order they finished."""

    results: list[tuple[int, Any]] = field(default_factory=list)
    stopped: list[int] = field(default_factory=list)  # indices stopped or never started
    errors: list[tuple[int, BaseException]] = field(default_factory=list)  # jobs that failed
    interrupted: bool = False  # the pool itself was told to stop


_idle = threading.Event()  # in a worker: no job is running
_stop: Any = None  # in a worker: the pool's stop event


def _init(stop: Any, threads: int) -> None:
    """In each worker, before any job: cap the BLAS threads before torch loads, and watch the
    stop event and the parent (see the module's docstring)."""
    global _stop
    _stop = stop
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
    parent = os.getppid()
    _idle.set()
    # Outside training's own handler (a job still loading its data), SIGTERM raises
    # KeyboardInterrupt, so that job ends as stopped instead of taking the worker down.
    signal.signal(signal.SIGTERM, signal.default_int_handler)

    def watch() -> None:
        while os.getppid() == parent and not stop.is_set():
            time.sleep(WATCH_SECONDS)
        if not _idle.is_set():
            os.kill(os.getpid(), signal.SIGTERM)  # a training job checkpoints and stops
        if os.getppid() != parent:
            _idle.wait()
            os._exit(130)

    threading.Thread(target=watch, daemon=True).start()


def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    _idle.clear()
    try:
        if _stop is not None and _stop.is_set():  # queued before the pool was stopped
            raise Stopped
        return fn(*args)
    except KeyboardInterrupt:
        raise Stopped from None
    finally:
        _idle.set()


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM to the pool's process stops the pool as SIGINT does (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(
    fn: Callable[..., Any],
    jobs: Sequence[tuple[Any, ...]],
    workers: int,
    threads: int = 0,
    on_result: Callable[[int, Any], None] | None = None,
    stagger: float = 0.0,
) -> Outcome:
    """Run `fn(*job)` for every job on `workers` spawned processes.

    `fn` must be importable by name (spawned workers unpickle it). `threads` caps each worker's
    BLAS threads (0: leave them). `on_result(index, value)` sees each result as it arrives.
    `stagger` seconds pass between the first submissions (workers that all open one database
    at once contend for its lock). A job's exception other than a stop lands in
    `Outcome.errors`; a worker that dies abruptly (out of memory) breaks the pool, which then
    stops the other workers with SIGTERM (they checkpoint) and fails their jobs too.
    """
    import concurrent.futures as cf  # here, not at import: `rnner --help` stays fast
    import multiprocessing

    outcome = Outcome()
    if not jobs:
        return outcome
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    futures: dict[cf.Future[Any], int] = {}

    def halt() -> None:
        stop.set()
        outcome.interrupted = True
        for fut in futures:
            fut.cancel()

    with (
        _sigterm_interrupts(),
        cf.ProcessPoolExecutor(
            max_workers=workers, mp_context=ctx, initializer=_init, initargs=(stop, threads)
        ) as pool,
    ):
        try:
            for i, args in enumerate(jobs):
                if stop.is_set():
                    break
                futures[pool.submit(_call, fn, tuple(args))] = i
                if stagger and i + 1 < min(workers, len(jobs)):
                    time.sleep(stagger)
        except KeyboardInterrupt:
            halt()
        outcome.stopped += [i for i in range(len(jobs)) if i not in futures.values()]
        pending = set(futures)
        while pending:
            try:
                for fut in cf.as_completed(pending):
                    pending.discard(fut)
                    _collect(fut, futures[fut], stop.is_set(), outcome, on_result)
            except KeyboardInterrupt:  # to this process: every job checkpoints and stops
                halt()
    outcome.stopped.sort()
    return outcome


def _collect(
    fut: cf.Future[Any],
    index: int,
    stopping: bool,
    outcome: Outcome,
    on_result: Callable[[int, Any], None] | None,
) -> None:
    if fut.cancelled() or (stopping and fut.exception() is not None):
        outcome.stopped.append(index)  # or a pool broken by the stop
        return
    try:
        value = fut.result()
    except Stopped:
        outcome.stopped.append(index)
        return
    except Exception as e:  # the caller decides what a failed job means
        outcome.errors.append((index, e))
        return
    outcome.results.append((index, value))
    if on_result is not None:
        on_result(index, value)
