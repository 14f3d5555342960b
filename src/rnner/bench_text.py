"""`rnner bench`'s table for people: one result dict (`rnner.bench.run`) as aligned text.

Apart from the measuring so that `--json` runs never import it and a saved JSON can be shown
again (`format_table(json.load(f))`).
"""

from __future__ import annotations

from typing import Any


def _si(x: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.2f} {unit}"
    return f"{x:.0f}"


def format_table(r: dict[str, Any]) -> str:
    """The measurements, one line each; the profile's parts sorted by their share."""
    c = r["config"]
    lat = r["latency_ms_batch1"]
    parts = r["flops_per_token_forward_by_part"]
    lines = [
        f"machine      {r['cpu_model']}; {r['threads']} threads; {r['device']}; "
        f"torch {r['torch_version']}",
        f"model        {c['cell']} {c['hidden_size']}x{c['layers']}"
        f"{' bi' if c['bidirectional'] else ''}, char {c['char_encoder']}, {c['output']}, "
        f"{c['num_tags']} tags, {c['embeddings']}; train batch {c['batch_size']}",
        f"train        {r['train_sentences_per_s']:9.1f} sentences/s  "
        f"{r['train_tokens_per_s']:9.0f} tokens/s  ({r['train_step_ms']:.2f} ms/step)",
    ]
    if "floor_sentences_per_s" in r:  # JSON saved before the floor was measured has none
        lines.append(
            f"floor        {r['floor_sentences_per_s']:9.1f} sentences/s  "
            f"({r['floor_step_ms']:.2f} ms/step; recurrent core alone); train at "
            f"{r['train_floor_fraction']:.2f} of it"
        )
    for bs, rate in r["infer_tokens_per_s_by_batch"].items():
        lines.append(f"infer b={bs:<6s}{rate:9.0f} tokens/s")
    if lat:
        lines.append(
            f"latency b=1   median {lat['median']:.2f} ms, p90 {lat['p90']:.2f} ms "
            f"per sentence ({lat['sentences']} sentences)"
        )
    one = r.get("latency_ms_batch1_one_thread")
    if one:
        lines.append(
            f"latency b=1   median {one['median']:.2f} ms, p90 {one['p90']:.2f} ms "
            "per sentence at 1 thread"
        )
    lines += [
        f"FLOPs/token  train {_si(r['train_flops_per_token'])} (3x forward; forward: "
        + ", ".join(f"{k} {_si(v)}" for k, v in parts.items())
        + ")",
        f"char input   {r['char_positions_per_token']:.1f} positions/token; tensor width "
        f"{r['char_width_mean']:.1f}, longest token {r['char_longest_mean']:.1f} (batch means)",
        f"matmul       {r['matmul_gflops']:.1f} GFLOP/s fp32",
        f"utilization  train {100 * r['utilization']:.2f} %, infer "
        f"(b={r['infer_batch_size']}) {100 * r['infer_utilization']:.2f} %",
        f"peak RSS     {r['peak_rss_mb']:.0f} MB",
    ]
    by_part = r.get("train_step_ms_by_part")
    if by_part:
        total = sum(by_part.values())
        lines.append(f"train step   {total:.2f} ms/batch by part (profiled separately):")
        lines += [
            f"  {name:12s}{ms:8.3f} ms  {100 * ms / total:5.1f} %"
            for name, ms in sorted(by_part.items(), key=lambda kv: -kv[1])
        ]
    return "\n".join(lines)
