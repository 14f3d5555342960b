"""What distillation's posterior loss costs per training step (docs/accuracy-levers.md).

    python benchmarks/distill_step.py [--config configs/conll03-accurate.toml]

Builds the config's model and training batches (`training.prepare`, the first `--sentences`
training sentences), gives every batch soft targets (random marginals: the cost does not
depend on their values), and times loss + backward on the same batches with and without
them, interleaved (ABBA), `--reps` passes after one untimed pass of each (the very first pass
is many times slower); prints the median seconds per pass of each and the median of the
paired ratios. No optimizer step: the weights stay as they are.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace

import numpy as np
import torch

from rnner import batching
from rnner.bench import cpu_model
from rnner.config import Config
from rnner.training import prepare


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="configs/conll03-accurate.toml")
    ap.add_argument("--sentences", type=int, default=400)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weight", type=float, default=0.5)
    args = ap.parse_args(argv)
    sets = [f"data.max_sentences={args.sentences}", f"train.threads={args.threads}"]
    s = prepare(Config.load(args.config, sets + ["train.device='cpu'"]))
    s.model.distill_weight = args.weight
    data = s.train.data
    rng = np.random.default_rng(0)
    soft = rng.random((len(data.tokens), len(s.vocabs.tags)), dtype=np.float32)
    with_soft = replace(data, soft=soft / soft.sum(1, keepdims=True))
    order = batching.batch_indices(data.lengths, s.cfg.train.batch_size)
    batches = {
        "plain": [batching.make_batch(data, i) for i in order],
        "distill": [batching.make_batch(with_soft, i) for i in order],
    }
    s.model.train()
    times: dict[str, list[float]] = {name: [] for name in batches}
    for r in range(-1, args.reps):  # -1: one untimed pass of each (the first is far slower)
        for name in list(batches)[:: 1 if r % 2 == 0 else -1]:
            start = time.perf_counter()
            for b in batches[name]:
                s.model.zero_grad(set_to_none=True)
                s.model.loss(b).backward()
            if r >= 0:
                times[name].append(time.perf_counter() - start)
    tokens = int(data.lengths.sum())
    print(
        f"{args.config}, first {args.sentences} training sentences ({tokens} tokens, "
        f"{len(order)} batches), {torch.get_num_threads()} threads, median of {args.reps}; "
        f"{cpu_model()}\n"
    )
    print("| loss | s per pass (loss + backward) |")
    print("|---|---|")
    for name, t in times.items():
        print(f"| {name} | {statistics.median(t):.2f} |")
    ratio = statistics.median(d / p for d, p in zip(times["distill"], times["plain"], strict=True))
    print(f"\ntime ratio distill / plain, median of the paired passes: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
