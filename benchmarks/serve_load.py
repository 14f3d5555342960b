"""Load test of `rnner serve` on loopback, with the offline rate of the same model beside it.

    python benchmarks/serve_load.py [--model models/conll03-en] [--seconds 10]
        [--requests 3000] [--soak 20000] [--json docs/bench/serve_load.json]
        [--doc docs/serving.md]

Starts `rnner serve` on a free loopback port (nothing leaves the machine), then for each
concurrency (1, 8, 64) and request size (one CoNLL-2003 dev sentence; 50 sentences as
`texts`) runs closed-loop clients on keep-alive connections for at most `--requests` requests
or `--seconds` seconds: requests/s, tokens/s (tokens the server reports tagging), p50/p99
latency, errors (any non-200 or failed connection). Then `--soak` one-sentence requests at
concurrency 64 with the server's resident memory (VmRSS) read before and after. In the same
run, the offline rate of the same weights (`rnner.bench.bench_infer`, as benchmarks/bench.py
measures inference) at batch 256 over CoNLL-2003 dev, one sentence per row (the shape of the
server's work: each text is its own document), with the server's torch threads.

The client is a minimal asyncio HTTP/1.1 client (pre-encoded requests, Content-Length
responses) so that it takes as little of the machine's CPU from the server as possible; it
still runs on the same cores, which the numbers include. The JSON result holds everything;
`--doc` rewrites the table between the serve_load markers of docs/serving.md from it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rnner import files
from rnner.bench import cpu_model

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- serve_load:begin -->", "<!-- serve_load:end -->"


def dev_sentences(data_root: Path) -> list[str]:
    out, cur = [], []
    for line in (data_root / "conll2003" / "dev.txt").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("-DOCSTART-"):
            if cur:
                out.append(" ".join(cur))
                cur = []
            continue
        cur.append(line.split()[0])
    return out


# --- the server ------------------------------------------------------------------------------


class Server:
    def __init__(self, model: str, threads: int, extra: list[str]):
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rnner.cli",
                "serve",
                model,
                "--port",
                "0",
                "--threads",
                str(threads),
                *extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.port = 0
        self.log_lines = 0
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:  # drained, so the server never blocks on its log
                self.log_lines += 1
                m = re.search(r"serving .* on http://127\.0\.0\.1:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(300) or not self.port:
            raise SystemExit("rnner serve did not start")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(120)


# --- the client ------------------------------------------------------------------------------


def encode_request(payload: dict) -> bytes:
    body = json.dumps(payload).encode("utf-8")
    return (
        b"POST /v1/ner HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body)
    ) + body


async def worker(
    port: int,
    requests: list[bytes],
    start: int,
    stride: int,
    budget: list[int],
    deadline: float,
    latencies: list[float],
    tokens: list[int],
    errors: list[str],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = start
    try:
        while budget[0] > 0 and time.perf_counter() < deadline:
            budget[0] -= 1
            req = requests[i % len(requests)]
            i += stride
            t0 = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            m = re.search(rb"content-length: *(\d+)", head, re.I)
            body = await reader.readexactly(int(m.group(1))) if m else b""
            latencies.append(time.perf_counter() - t0)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n", 1)[0].decode())
                continue
            tokens.append(json.loads(body)["tokens"])
    except (OSError, asyncio.IncompleteReadError) as e:
        errors.append(f"{type(e).__name__}: {e}")
    finally:
        writer.close()


async def load(
    port: int, requests: list[bytes], concurrency: int, max_requests: int, seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    tokens: list[int] = []
    errors: list[str] = []
    budget = [max_requests]
    t0 = time.perf_counter()
    deadline = t0 + seconds
    await asyncio.gather(
        *(
            worker(port, requests, k, concurrency, budget, deadline, latencies, tokens, errors)
            for k in range(concurrency)
        )
    )
    wall = time.perf_counter() - t0
    ms = sorted(1000 * x for x in latencies)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, int(round(p / 100 * (len(ms) - 1))))] if ms else float("nan")

    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "seconds": wall,
        "requests_per_s": len(latencies) / wall,
        "tokens_per_s": sum(tokens) / wall,
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:3],
    }


# --- offline ---------------------------------------------------------------------------------


def offline(model: str, data_root: Path, reps: int) -> float:
    """Tokens/s of the same weights at batch 256 over CoNLL-2003 dev, one sentence per row:
    the shape of the server's work, where every text is its own document
    (`rnner.bench.bench_infer`, the inference timing of benchmarks/bench.py)."""
    import dataclasses

    import numpy as np
    import torch

    from rnner import bench, conll, pipeline
    from rnner.predict import Tagger

    tagger = Tagger.load(model)
    sents = conll.read_conll(data_root / "conll2003" / "dev.txt")
    cfg = dataclasses.replace(
        tagger.cfg, data=dataclasses.replace(tagger.cfg.data, context="sentence")
    )
    dev = pipeline.encode_split(sents, tagger.vocabs, cfg)
    units = np.ones(len(dev.groups), dtype=np.int64)
    setup = bench.Setup(
        cfg=cfg,
        model=tagger.model,
        train=dev.data,
        train_units=units,
        dev=dev.data,
        device=torch.device("cpu"),
        rng=np.random.default_rng(0),
        num_tags=len(tagger.vocabs.tags),
        word_dim=tagger.model.words.embedding_dim,
        opt=torch.optim.SGD(tagger.model.parameters(), lr=0.0),  # inference only: never stepped
        average=None,
    )
    return bench.bench_infer(setup, 256, reps)["tokens_per_s"]


# --- report ----------------------------------------------------------------------------------


def table(r: dict[str, Any]) -> str:
    off = r["offline_tokens_per_s"]
    lines = [
        f"Measured {r['date']} on {r['machine']} ({r['cpus']} CPUs; {r['note']}); server "
        f"`--threads {r['threads']}`, client on the same machine.",
        "",
        "| request | concurrency | requests/s | tokens/s | p50 ms | p99 ms | errors |"
        " tokens/s vs offline |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["runs"]:
        ref = off
        lines.append(
            f"| {row['sentences']} sentence{'s' if row['sentences'] > 1 else ''} "
            f"| {row['concurrency']} | {row['requests_per_s']:.0f} | {row['tokens_per_s']:.0f} "
            f"| {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['errors']} "
            f"| {100 * row['tokens_per_s'] / ref:.0f} % |"
        )
    soak = r["soak"]
    lines += [
        "",
        f"Offline, same weights and threads, batch 256 over CoNLL-2003 dev, one sentence per "
        f"row (`rnner.bench.bench_infer`): {off:.0f} tokens/s; the last column is the "
        "server's tokens/s against it.",
        "",
        f"Memory: {soak['requests']} one-sentence requests at concurrency 64 "
        f"({soak['errors']} errors): server RSS {soak['rss_before_mb']:.0f} MB before, "
        f"{soak.get('rss_half_mb', float('nan')):.0f} MB half-way, "
        f"{soak['rss_after_mb']:.0f} MB after.",
    ]
    return "\n".join(lines)


def update_doc(path: Path, text: str) -> None:
    doc = path.read_text(encoding="utf-8")
    a, b = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    files.write_text(path, doc[:a] + "\n" + text + "\n" + doc[b:])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=str(ROOT / "models" / "conll03-en"))
    p.add_argument(
        "--data", default=os.environ.get("RNNER_DATA", str(ROOT.parent / "shared" / "data"))
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the server and of the offline run (1: the other "
        "core is left to HTTP and the client)",
    )
    p.add_argument("--seconds", type=float, default=10.0, help="at most, per load level")
    p.add_argument("--requests", type=int, default=3000, help="at most, per load level")
    p.add_argument("--soak", type=int, default=20000, help="requests between RSS readings")
    p.add_argument("--offline-reps", type=int, default=3)
    p.add_argument("--note", default="", help="words on the machine's state, for the table")
    p.add_argument("--json", help="write the result here")
    p.add_argument("--doc", help="rewrite the table between the serve_load markers here")
    p.add_argument("--from-json", help="only render the table of an earlier result")
    args = p.parse_args(argv)
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text(encoding="utf-8"))
        print(table(result))
        if args.doc:
            update_doc(Path(args.doc), table(result))
        return 0

    threads = args.threads
    data_root = Path(args.data)
    sents = dev_sentences(data_root)
    one = [encode_request({"text": s}) for s in sents]
    fifty = [encode_request({"texts": sents[i : i + 50]}) for i in range(0, len(sents) - 50, 50)]

    import torch

    torch.set_num_threads(threads)
    off = offline(args.model, data_root, args.offline_reps)
    print(f"offline b=256: {off:.0f} tokens/s", flush=True)

    server = Server(args.model, threads, [])
    runs = []
    try:
        asyncio.run(load(server.port, one, 8, 200, 30))  # warm-up: allocations, caches
        for size, requests in ((1, one), (50, fifty)):
            for c in (1, 8, 64):
                row = asyncio.run(load(server.port, requests, c, args.requests, args.seconds))
                row["sentences"] = size
                runs.append(row)
                print(
                    json.dumps({k: v for k, v in row.items() if k != "error_examples"}), flush=True
                )
        rss = [server.rss_mb()]
        halves = []
        for _ in range(2):  # two halves: growth that stops is warm-up, growth that goes on a leak
            halves.append(asyncio.run(load(server.port, one, 64, args.soak // 2, 3600)))
            rss.append(server.rss_mb())
        soak = {
            "requests": sum(h["requests"] for h in halves),
            "errors": sum(h["errors"] for h in halves),
            "requests_per_s": statistics.mean(h["requests_per_s"] for h in halves),
            "rss_before_mb": rss[0],
            "rss_half_mb": rss[1],
            "rss_after_mb": rss[2],
        }
        print(json.dumps(soak), flush=True)
    finally:
        exit_code = server.stop()
    load_avg = os.getloadavg()
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": cpu_model(),
        "cpus": os.cpu_count(),
        "threads": threads,
        "note": args.note or f"load average {load_avg[0]:.1f} at the end",
        "load_average": load_avg,
        "model": args.model,
        "offline_tokens_per_s": off,
        "runs": runs,
        "soak": soak,
        "server_exit_code": exit_code,
        "command": "python benchmarks/serve_load.py " + " ".join(argv or sys.argv[1:]),
    }
    print(table(result))
    if args.json:
        files.write_json(args.json, result)
    if args.doc:
        update_doc(Path(args.doc), table(result))
    errors = sum(r["errors"] for r in runs) + soak["errors"]
    return 1 if errors or exit_code else 0


if __name__ == "__main__":
    sys.exit(main())
