"""The state a training run carries between epochs and across an interruption.

`Progress` holds the counters, `WeightAverage` the averaged weights; `save_checkpoint` and
`restore` put them (with model, optimizer, schedule and every RNG) in one safetensors
checkpoint, so a resumed run ends with exactly the metrics of an uninterrupted one (on the CPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import signal
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import checkpoint
from ..model import RNNTagger


class Interrupted(Exception):
    """Training stopped by SIGINT/SIGTERM after writing a checkpoint."""

    def __init__(self, output: Path):
        self.output = output
        super().__init__(f"interrupted; resume with: rnner train --resume {output}")


class Stopped(Exception):
    """Raised by the loop between two batches after a stop request; the caller checkpoints."""

    def __init__(self, epoch_rng: Mapping[str, Any]):
        self.epoch_rng = epoch_rng  # numpy state at the start of the epoch in progress
        super().__init__("stop requested")


@contextlib.contextmanager
def stop_requests() -> Iterator[list[bool]]:
    """A flag set by Ctrl-C or SIGTERM, so the loop stops between two batches."""
    flag = [False]

    def handler(signum: int, frame: Any) -> None:
        flag[0] = True

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


@dataclass
class Progress:
    """Counters a resumed run needs besides model, optimizer and RNGs."""

    epoch: int = 1  # the epoch in progress
    position: int = 0  # batches of it already done
    best_f1: float = -1.0
    best_epoch: int = 0
    stale: int = 0
    elapsed: float = 0.0
    epoch_seconds: float = 0.0  # of the epoch in progress, and its running totals:
    loss: float = 0.0
    sequences: int = 0
    sentences: int = 0
    tokens: int = 0
    log: list[str] = field(default_factory=list)


class WeightAverage:
    """An exponential moving average of a model's parameters (Polyak averaging).

    The decay ramps up as in TensorFlow's ExponentialMovingAverage, (1 + n) / (10 + n) until
    it reaches `decay`, so the average forgets the random initial weights within the first
    epoch instead of dragging them along for thousands of steps.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.average = {k: p.detach().clone() for k, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        weight = 1 - min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, p in model.named_parameters():
            self.average[k].lerp_(p, weight)

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own ones after it."""
        own = {k: p.detach().clone() for k, p in model.named_parameters()}
        with torch.no_grad():
            for k, p in model.named_parameters():
                p.copy_(self.average[k])
        try:
            yield
        finally:
            with torch.no_grad():
                for k, p in model.named_parameters():
                    p.copy_(own[k])

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "average": self.average}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = state["updates"]
        for k, v in state["average"].items():
            self.average[k].copy_(v)


def save_checkpoint(
    out: Path,
    model: RNNTagger,
    opt: torch.optim.Optimizer,
    sched: Any,
    progress: Progress,
    epoch_rng: Mapping[str, Any],
    average: WeightAverage | None,
) -> None:
    checkpoint.save(
        out,
        {
            "model": model.state_dict(),
            "average": average.state_dict() if average else None,
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "progress": dataclasses.asdict(progress),
            "epoch_rng": epoch_rng,  # numpy state at the start of the epoch: same batch order
            "torch_rng": torch.get_rng_state(),
            "python_rng": random.getstate(),
        },
    )


def restore(
    out: Path,
    model: RNNTagger,
    opt: torch.optim.Optimizer,
    sched: Any,
    average: WeightAverage | None,
) -> tuple[Progress, dict]:
    """Load the checkpoint of `out` into the objects given (and torch's and Python's RNGs);
    returns the counters and the numpy RNG state the epoch in progress started from."""
    ck = checkpoint.load(out)
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    sched.load_state_dict(ck["scheduler"])
    if average is not None:
        average.load_state_dict(ck["average"])
    torch.set_rng_state(ck["torch_rng"])
    random.setstate(_tuples(ck["python_rng"]))
    return Progress(**ck["progress"]), ck["epoch_rng"]


def _tuples(x: Any) -> Any:
    """JSON turned Python's random state tuples into lists; turn them back."""
    return tuple(_tuples(v) for v in x) if isinstance(x, list | tuple) else x
