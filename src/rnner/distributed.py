"""Data-parallel training of one model over several processes: `rnner train --nproc N`, or
`torchrun ... -m rnner.cli train ...` across machines.

Every rank builds the same model and draws the same length-bucketed batches each epoch (same
seed); the batches are dealt round-robin, so one optimizer step covers `world` consecutive
batches of the single-process epoch: the effective batch is `world × train.batch_size`
sentences. Each rank's loss is weighted by `world · n_rank / n_step` before DDP averages the
gradients, which makes the step exactly the one a single process would take on the union of
those batches (a rank left without a batch at the end of an epoch joins with weight 0).

Rank 0 alone evaluates, logs, writes the run directory and checkpoints; the others follow its
dev scores (early stopping, plateau schedule). Checkpoints count batches of the epoch, not
steps, so a run resumes with any number of processes. Gloo on CPUs, NCCL on GPUs (one per
rank, `cuda:LOCAL_RANK`). Collectives time out after `RNNER_DIST_TIMEOUT` seconds (default
1800, torch's own default; rank 0's evaluation of dev must fit in it), and a rank that dies
stops the whole job with a message naming it.
"""

from __future__ import annotations

import contextlib
import datetime
import gc
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from .model import RNNTagger

TIMEOUT_ENV = "RNNER_DIST_TIMEOUT"
DEFAULT_TIMEOUT = 1800.0


class DistributedError(RuntimeError):
    """A rank of the job died or stopped answering."""


@dataclass
class Single:
    """One process: the training loop's distributed hooks, doing nothing."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        return device

    def wrap(self, model: RNNTagger) -> Any:
        return model.loss

    def deal(
        self, batches: Sequence[np.ndarray], position: int
    ) -> list[tuple[int, np.ndarray, float]]:
        """(batches done after this step, this rank's batch, its loss weight) per step."""
        return [(i + 1, b, 1.0) for i, b in enumerate(batches[position:], position)]

    def total(self, values: Sequence[float]) -> list[float]:
        return list(values)

    def share(self, obj: Any) -> Any:
        return obj


@dataclass
class Group(Single):
    """A rank of a torch.distributed job (the process group is already initialised)."""

    local_rank: int = 0

    def device(self, device: torch.device) -> torch.device:
        if device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        self._device = device
        return device

    def wrap(self, model: RNNTagger) -> Any:
        """The model's loss under DistributedDataParallel (made once per model: building it
        broadcasts rank 0's weights)."""
        from torch.nn.parallel import DistributedDataParallel

        if getattr(self, "_wrapped", (None,))[0] is not model:
            cuda = self._device.type == "cuda"
            ddp = DistributedDataParallel(_Loss(model), device_ids=[self._device] if cuda else None)
            self._wrapped = (model, ddp)
        return self._wrapped[1]

    def deal(
        self, batches: Sequence[np.ndarray], position: int
    ) -> list[tuple[int, np.ndarray, float]]:
        steps = []
        for start in range(position, len(batches), self.world):
            group = batches[start : start + self.world]
            rows = sum(len(b) for b in group)
            mine = self.rank < len(group)
            batch = group[self.rank] if mine else group[0]  # weight 0: joins the all-reduce
            weight = self.world * len(batch) / rows if mine else 0.0
            steps.append((start + len(group), batch, weight))
        return steps

    def total(self, values: Sequence[float]) -> list[float]:
        t = torch.tensor(list(values), dtype=torch.float64, device=self._comm_device())
        _collective(torch.distributed.all_reduce, t)
        return t.tolist()

    def share(self, obj: Any) -> Any:
        """Rank 0's `obj`, on every rank."""
        box = [obj if self.main else None]
        _collective(torch.distributed.broadcast_object_list, box, src=0, device=self._comm_device())
        return box[0]

    def _comm_device(self) -> torch.device:
        return self._device if torch.distributed.get_backend() == "nccl" else torch.device("cpu")


class _Loss(nn.Module):
    """DDP synchronises gradients through `forward`; the tagger's training entry is `loss`."""

    def __init__(self, model: RNNTagger):
        super().__init__()
        self.model = model

    def forward(self, batch: Any) -> torch.Tensor:
        return self.model.loss(batch)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _communication(e: RuntimeError) -> bool:
    """Whether `e` is gloo's or NCCL's: a peer that closed its connection, or a timeout."""
    if isinstance(e, getattr(torch.distributed, "DistError", ())):
        return True
    text = str(e)
    return any(
        s in text
        for s in ("gloo", "NCCL", "Connection closed", "Connection reset", "Timed out", "timed out")
    )


def _collective(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except RuntimeError as e:  # gloo/NCCL: peer gone, or the timeout passed
        raise DistributedError(
            f"rank {torch.distributed.get_rank()}: another rank of the job "
            f"stopped answering ({_first_line(e)})"
        ) from e


_CURRENT: Single = Single()


def current() -> Single:
    """The job this process is a rank of (`Single()` outside one)."""
    return _CURRENT


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def timeout() -> float:
    return float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT)


@contextlib.contextmanager
def session(device: str = "auto") -> Iterator[Single]:
    """Join the job described by torchrun's environment (RANK, WORLD_SIZE, MASTER_ADDR...)
    for the block; outside one, a `Single()`."""
    global _CURRENT
    if world_size() <= 1:
        yield _CURRENT
        return
    import torch.distributed as dist

    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout()))
    _CURRENT = Group(
        rank=dist.get_rank(),
        world=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
    )
    try:
        yield _CURRENT
        # Every rank meets here before any tears the group down: a rank that destroyed it
        # while a peer still held gloo connections was seen dying at exit with SIGABRT
        # ("terminate called without an active exception") after its work was done.
        with contextlib.suppress(RuntimeError):  # a peer already gone: nothing to wait for
            dist.barrier()
    except DistributedError:
        raise
    except RuntimeError as e:  # DDP's own gradient all-reduce: peer gone, or timed out
        if not _communication(e):
            raise
        raise DistributedError(
            f"rank {_CURRENT.rank}: another rank of the job stopped answering ({_first_line(e)})"
        ) from e
    finally:
        _CURRENT = Single()
        # The DDP wrapper of the training that just ended holds the process group through
        # reference cycles; left to the interpreter's exit, gloo's threads were destroyed
        # unjoined and the rank died with SIGABRT after its work was done. Collected here,
        # while the group is alive, and then the group is taken down.
        gc.collect()
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_share(nproc: int) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, cores // nproc)


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run `rnner ARGV` as `nproc` ranks on this machine (what torchrun --standalone does):
    their exit status, or 1 with the failing rank named when one of them dies first."""
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "WORLD_SIZE": str(nproc),
        "LOCAL_WORLD_SIZE": str(nproc),
    }
    if not torch.cuda.is_available():  # one CPU share per rank unless told otherwise
        env.setdefault("OMP_NUM_THREADS", str(cpu_share(nproc)))
    procs = []
    for rank in range(nproc):
        rank_env = {**env, "RANK": str(rank), "LOCAL_RANK": str(rank)}
        procs.append(subprocess.Popen([sys.executable, "-m", "rnner.cli", *argv], env=rank_env))
    interrupted = False

    def forward(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, forward)
    try:
        while True:
            try:
                codes = [p.poll() for p in procs]
                failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
                if failed or all(c is not None for c in codes):
                    break
                time.sleep(0.2)
            except KeyboardInterrupt:
                # Ctrl-C signals the ranks too; `kill -INT/-TERM` reaches this process alone:
                # pass it on once, and the ranks checkpoint and stop together
                if not interrupted:
                    interrupted = True
                    for p in procs:
                        if p.poll() is None:
                            p.send_signal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop(procs)
    if not failed:
        return 0
    # the rank that died first, not the ones that then lost it: signals before exit statuses
    rank, code = min(failed, key=lambda rc: (rc[1] >= 0, rc[0]))
    if interrupted or code == 130:
        return 130
    if code == 2 and all(c == 2 for _, c in failed):
        return 2  # a user error, already printed by every rank (the same line)
    how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
    print(f"rnner train: rank {rank} of {nproc} {how}; stopped the other ranks", file=sys.stderr)
    return 1


def _stop(procs: list[subprocess.Popen], grace: float = 10.0) -> None:
    """Give ranks still running `grace` seconds after SIGTERM, then SIGKILL."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
