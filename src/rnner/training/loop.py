"""The training loop as a generator of epochs (after spaCy's `train_while_improving`).

It trains, scores dev and steps the schedule, then yields one `Epoch` record; whoever
consumes the records decides what to do with them (write logs and checkpoints, stop early,
prune a trial). The loop itself writes no file and prints nothing but a progress bar.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

from .. import augment, batching, distributed
from ..model import RNNTagger
from ..pipeline import evaluate_split
from .setup import Setup
from .state import Progress, Stopped, WeightAverage


@dataclass
class Epoch:
    """One finished epoch: its log record, and whether it is the best so far."""

    record: dict[str, Any]
    improved: bool  # dev F1 above every earlier epoch's (always, with train.select "last")


def train_while_improving(
    s: Setup,
    state: Progress,
    epoch_rng: Mapping[str, Any] | None,
    started: float,
    stop: list[bool],
    progress: bool = True,
) -> Iterator[Epoch]:
    """Epochs `state.epoch` .. `train.epochs`, continuing a resumed epoch at `state.position`
    with the batch order drawn from `epoch_rng`. When `stop[0]` turns true the loop raises
    `Stopped` between two batches, with `state` ready to checkpoint.

    `state` is advanced before each yield (its `epoch` is then the next one); with the
    average weights (train.ema) dev is scored on them.
    """
    t = s.cfg.train
    while state.epoch <= t.epochs:
        epoch = state.epoch
        if epoch_rng is not None:
            s.rng.bit_generator.state = epoch_rng
        epoch_rng = s.rng.bit_generator.state
        train_time = _train_epoch(s, state, epoch_rng, started, stop, progress)
        dist = distributed.current()
        scores = None
        if dist.main:  # in a data-parallel job the other ranks follow rank 0's dev scores
            with s.average.applied(s.model) if s.average else contextlib.nullcontext():
                scores = evaluate_split(
                    s.model,
                    s.dev,
                    s.dev_batches,
                    s.corpus.dev,
                    s.vocabs,
                    s.cfg,
                    s.corpus.scheme,
                    s.device,
                )["entity"]
        scores = dist.share(scores)
        dev_f1 = scores["f1"]
        # "last" is for training on train+dev, where dev F1 is no longer a fair judge.
        improved = dev_f1 > state.best_f1 or t.select == "last"
        if improved:
            state.best_f1, state.best_epoch, state.stale = dev_f1, epoch, 0
        else:
            state.stale += 1
        if isinstance(s.sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            s.sched.step(dev_f1)
        else:
            s.sched.step()
        record = {
            "epoch": epoch,
            "train_loss": state.loss / max(state.sequences, 1),
            "dev_precision": scores["precision"],
            "dev_recall": scores["recall"],
            "dev_f1": dev_f1,
            "lr": s.opt.param_groups[0]["lr"],
            "train_seconds": round(train_time, 3),
            "sentences_per_s": round(state.sentences / train_time, 1),
            "tokens_per_s": round(state.tokens / train_time, 1),
            "elapsed_seconds": round(time.perf_counter() - started, 3),
            "best": improved,
        }
        state.log.append(json.dumps(record))
        state.epoch, state.position, state.epoch_seconds = epoch + 1, 0, 0.0
        state.loss, state.sequences, state.sentences, state.tokens = 0.0, 0, 0, 0
        state.elapsed = time.perf_counter() - started
        epoch_rng = None
        yield Epoch(record, improved)


def _train_epoch(
    s: Setup,
    state: Progress,
    epoch_rng: Mapping[str, Any],
    started: float,
    stop: list[bool],
    progress: bool,
) -> float:
    """One pass over the training batches from `state.position`; returns its seconds."""
    t = s.cfg.train
    model, opt = s.model, s.opt
    # robustness hook (rnner.augment): this epoch's perturbed training text, if any
    train, unit_sizes = augment.epoch_data(s.cfg, s.corpus, s.vocabs, state.epoch, s.train)
    batches = batching.batch_indices(train.lengths, t.batch_size, s.rng)
    dist = distributed.current()
    train_loss = dist.wrap(model)  # model.loss, or its DistributedDataParallel wrapper
    model.train()
    t0 = time.perf_counter() - state.epoch_seconds
    steps = dist.deal(batches, state.position)  # one batch per rank and step
    total = -(-len(batches) // dist.world)
    bar = tqdm(
        steps,
        desc=f"epoch {state.epoch}",
        unit="batch",
        leave=False,
        disable=not progress or not sys.stderr.isatty(),
        dynamic_ncols=True,
        initial=total - len(steps),
        total=total,
    )
    for after, index, weight in bar:
        b = batching.make_batch(train, index).to(s.device)
        loss = train_loss(b)
        opt.zero_grad(set_to_none=True)
        (loss * weight if weight != 1.0 else loss).backward()
        update(model, opt, t.clip, s.average)
        counted = weight > 0  # a rank without a batch of its own counts nothing
        step_loss, sequences, sentences, tokens, stopping = dist.total(
            [
                loss.item() * len(index) * counted,
                len(index) * counted,
                int(unit_sizes[index].sum()) * counted,
                b.num_tokens * counted,
                stop[0],
            ]
        )
        state.loss += step_loss
        state.sequences += int(sequences)
        state.sentences += int(sentences)
        state.tokens += int(tokens)
        if progress and (after - 1) % 20 < dist.world:
            rate = state.sentences / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{state.loss / state.sequences:.3f}", sents_s=f"{rate:.0f}")
        if stopping:  # every rank stops at the same step
            state.position = after
            state.epoch_seconds = time.perf_counter() - t0
            state.elapsed = time.perf_counter() - started
            bar.close()
            raise Stopped(epoch_rng)
    bar.close()
    return time.perf_counter() - t0


def update(
    model: RNNTagger, opt: torch.optim.Optimizer, clip: float, average: WeightAverage | None
) -> None:
    """After backward: clip the gradient norm, step, and update the weight average."""
    if clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    if average is not None:
        average.update(model)
