"""`fit`: one training run from a config to a filled run directory.

It consumes the loop's epoch records: the best epoch's weights and the log are written, a
checkpoint after every epoch and on SIGINT/SIGTERM, early stopping is decided, hooks (tune's
pruning) see every record; at the end the best weights are scored on dev and test.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from .. import distributed, files
from ..config import Config, TrainConfig
from ..pipeline import Corpus, encode_split, evaluate_split
from ..provenance import describe
from ..runs import load_weights, save_run
from .loop import Epoch, train_while_improving
from .setup import Setup, prepare
from .state import Interrupted, Progress, Stopped, restore, save_checkpoint, stop_requests

Hook = Callable[[dict[str, Any]], None]


def fit(
    cfg: Config,
    output: str | Path,
    corpus: Corpus | None = None,
    hooks: Sequence[Hook] = (),
    progress: bool = True,
    resume: bool = False,
) -> dict[str, Any]:
    """Train on `train`, keep the epoch with the best dev entity F1, score it on test.

    A checkpoint is written after every epoch and on SIGINT/SIGTERM (then `Interrupted` is
    raised); `resume=True` continues from it and ends with exactly the metrics of an
    uninterrupted run (on the CPU).
    """
    t = cfg.train
    out = Path(output)
    dist = distributed.current()  # rank 0 alone writes, logs and prints in a data-parallel job
    progress = progress and dist.main
    s = prepare(cfg, corpus)
    state, epoch_rng, best = Progress(), None, {}
    if resume:
        state, epoch_rng = restore(out, s.model, s.opt, s.sched, s.average)
        _reopen(state, t)
        if state.best_epoch and dist.main:
            best = load_weights(out, s.device)
    elif dist.main:
        out.mkdir(parents=True, exist_ok=True)
        meta = {"source_scheme": s.corpus.scheme, **s.info, **describe(s.corpus.paths, t.seed)}
        save_run(out, s.model, s.vocabs, cfg, meta)
    started = time.perf_counter() - state.elapsed
    with stop_requests() as stop:
        try:
            for epoch in train_while_improving(s, state, epoch_rng, started, stop, progress):
                if epoch.improved and dist.main:
                    best = _keep(out, s)
                if dist.main:
                    files.write_text(out / "log.jsonl", "\n".join(state.log) + "\n")
                done = bool(t.patience and state.stale >= t.patience)
                if done or state.epoch > t.epochs:
                    state.epoch = t.epochs + 1
                if dist.main:
                    _checkpoint(out, s, state, s.rng.bit_generator.state)
                for hook in hooks if dist.main else ():
                    hook(epoch.record)
                if progress:
                    tqdm.write(_epoch_line(epoch))
                if done:
                    break
        except Stopped as e:
            if dist.main:
                _checkpoint(out, s, state, e.epoch_rng)
            raise Interrupted(out) from None
    if not dist.main:
        return dist.share(None)  # rank 0's metrics
    s.model.load_state_dict(best)
    metrics = final_scores(s, state)
    files.write_json(out / "metrics.json", metrics)
    return dist.share(metrics)


def _reopen(state: Progress, t: TrainConfig) -> None:
    """Between two epochs, the next epoch is the one after the last logged: a finished run
    resumed with more epochs (or more patience than it stopped on) goes on from there."""
    if state.position == 0:
        state.epoch = len(state.log) + 1
        if t.patience and state.stale >= t.patience:
            state.epoch = t.epochs + 1


def _keep(out: Path, s: Setup) -> dict[str, torch.Tensor]:
    """The new best epoch's weights (the averaged ones, with train.ema), written and kept."""
    with s.average.applied(s.model) if s.average else contextlib.nullcontext():
        save_run(out, s.model, s.vocabs, s.cfg, None)
        return {k: v.detach().clone() for k, v in s.model.state_dict().items()}


def _checkpoint(out: Path, s: Setup, state: Progress, epoch_rng: Mapping[str, Any]) -> None:
    save_checkpoint(out, s.model, s.opt, s.sched, state, epoch_rng, s.average)


def _epoch_line(epoch: Epoch) -> str:
    r = epoch.record
    return (
        f"epoch {r['epoch']:3d}  loss {r['train_loss']:8.4f}  dev P/R/F1 "
        f"{100 * r['dev_precision']:.2f}/{100 * r['dev_recall']:.2f}/"
        f"{100 * r['dev_f1']:.2f}  {r['train_seconds']:5.1f}s  "
        f"{r['sentences_per_s']:.0f} sent/s" + ("  *" if epoch.improved else "")
    )


def final_scores(s: Setup, state: Progress) -> dict[str, Any]:
    """metrics.json: the model as it is now (the best epoch's) scored on dev and test."""
    metrics: dict[str, Any] = {
        "best_epoch": state.best_epoch,
        "epochs_run": len(state.log),
        "train_seconds": round(state.elapsed, 2),
        "device": str(s.device),
    }
    t = s.cfg.train
    finals = [("dev", s.corpus.dev, s.dev, s.dev_batches)] if s.corpus.dev else []
    if s.corpus.test:  # dev is already encoded; test only now
        test = encode_split(s.corpus.test, s.vocabs, s.cfg, s.corpus.scheme)
        finals.append(("test", s.corpus.test, test, test.batches(t.eval_batch_size)))
    for split, sents, enc, batches in finals:
        res = evaluate_split(
            s.model, enc, batches, sents, s.vocabs, s.cfg, s.corpus.scheme, s.device, report=True
        )
        res.pop("predictions")
        metrics[split] = res
    return metrics
