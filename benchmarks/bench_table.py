"""A Markdown table from saved `bench.py --json` outputs, side by side.

python benchmarks/bench_table.py NAME=FILE.json [NAME=FILE.json ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROWS = [
    ("train sentences/s", lambda d: f"{d['train_sentences_per_s']:.0f}"),
    ("train tokens/s", lambda d: f"{d['train_tokens_per_s']:.0f}"),
    ("train step, ms (batch {batch})", lambda d: f"{d['train_step_ms']:.1f}"),
    (
        "floor (recurrent core alone) sentences/s; train as a fraction of it",
        lambda d: (
            f"{d['floor_sentences_per_s']:.0f}; {d['train_floor_fraction']:.2f}"
            if "floor_sentences_per_s" in d
            else "-"
        ),
    ),
    (
        "infer tokens/s at batch {infer_batches}",
        lambda d: " / ".join(f"{v:.0f}" for v in d["infer_tokens_per_s_by_batch"].values()),
    ),
    (
        "latency at batch 1, median / p90 ms",
        lambda d: f"{d['latency_ms_batch1']['median']:.2f} / {d['latency_ms_batch1']['p90']:.2f}",
    ),
    (
        "latency at batch 1, 1 thread, median / p90 ms",
        lambda d: (
            f"{d['latency_ms_batch1_one_thread']['median']:.2f} / "
            f"{d['latency_ms_batch1_one_thread']['p90']:.2f}"
            if d.get("latency_ms_batch1_one_thread")
            else "-"
        ),
    ),
    ("fp32 matmul GFLOP/s", lambda d: f"{d['matmul_gflops']:.0f}"),
    (
        "FLOPs/token train / infer (analytic)",
        lambda d: (
            f"{d['train_flops_per_token'] / 1e6:.2f}M / {d['infer_flops_per_token'] / 1e6:.2f}M"
        ),
    ),
    (
        "utilization train / infer",
        lambda d: f"{100 * d['utilization']:.1f}% / {100 * d['infer_utilization']:.1f}%",
    ),
    ("peak RSS, MB", lambda d: f"{d['peak_rss_mb']:.0f}"),
]


def main(argv: list[str]) -> int:
    pairs = [(name, json.loads(Path(f).read_text())) for name, f in (a.split("=", 1) for a in argv)]
    first = pairs[0][1]
    print("| measurement | " + " | ".join(name for name, _ in pairs) + " |")
    print("|---|" + "---|" * len(pairs))
    for label, fmt in ROWS:
        label = label.format(
            batch=first["config"]["batch_size"],
            infer_batches=" / ".join(first["infer_tokens_per_s_by_batch"]),
        )
        print(f"| {label} | " + " | ".join(fmt(d) for _, d in pairs) + " |")
    c = first["config"]
    print(
        f"\nModel: {c}. Machine: {first['cpu_model']}, torch {first['torch_version']}, "
        f"device {first['device']}; plan {first['plan']}."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
