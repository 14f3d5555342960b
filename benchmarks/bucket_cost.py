"""Tagging rate by the fixed cost per model call that `rnner.batching.length_buckets` assumes.

`Tagger.tag` cuts a batch of mixed lengths where a cost model says a cut saves time: a call
costs `call_steps` row-steps plus its longest length times (rows + `step_rows`). The larger
`call_steps`, the fewer cuts. This tags random CoNLL-2003 dev texts in batches of B (as a
server's micro-batches or `rnner predict`'s chunks come) through `rnner.stream.span_records`
with several values, interleaved, and prints the median tokens/s of each.

    python benchmarks/bucket_cost.py MODEL [MODEL ...] [--batches 8 24 256] [--reps 3] \
        [--call-steps 16 32 64 128] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> int:
    import torch

    from rnner import batching, conll, predict
    from rnner.predict import Tagger
    from rnner.stream import span_records

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+")
    p.add_argument(
        "--data", default=os.environ.get("RNNER_DATA", str(ROOT.parent / "shared" / "data"))
    )
    p.add_argument("--batches", type=int, nargs="+", default=[8, 24, 256])
    p.add_argument("--call-steps", type=float, nargs="+", default=[16, 32, 64, 128])
    p.add_argument("--step-rows", type=float, default=4.0)
    p.add_argument("--tokens", type=int, default=50_000, help="about this many per measurement")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    texts = [
        " ".join(s.tokens) for s in conll.read_conll(Path(args.data) / "conll2003" / "dev.txt")
    ]
    original = batching.length_buckets
    result: dict[str, dict] = {}
    for model in args.models:
        tagger = Tagger.load(model)
        for size in args.batches:
            rng = random.Random(0)
            chunks = [rng.sample(texts, size) for _ in range(max(1, args.tokens // (15 * size)))]
            tokens = sum(len(t.split()) for c in chunks for t in c)
            for c in chunks[:3]:
                span_records(tagger, c)  # first calls: allocations
            rates: dict[float, list[float]] = {v: [] for v in args.call_steps}
            for _ in range(args.reps):
                for value in args.call_steps:
                    predict.length_buckets = lambda lengths, cap, v=value: original(
                        lengths, cap, args.step_rows, v
                    )
                    t0 = time.perf_counter()
                    for c in chunks:
                        span_records(tagger, c)
                    rates[value].append(tokens / (time.perf_counter() - t0))
            predict.length_buckets = original
            row = {str(v): statistics.median(r) for v, r in rates.items()}
            result.setdefault(model, {})[str(size)] = row
            cells = "  ".join(f"{v:g}: {statistics.median(r):.0f}" for v, r in rates.items())
            print(f"{model} B={size} tokens/s by call_steps  {cells}", flush=True)
    if args.json:
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "unknown",
        )
        meta = {
            "machine": f"{cpu}, {os.cpu_count()} CPUs",
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "threads": args.threads,
            "step_rows": args.step_rows,
            "reps": args.reps,
            "load_average": os.getloadavg(),
        }
        Path(args.json).write_text(json.dumps({**meta, "tokens_per_s": result}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
