"""Load test of `rnner serve` on loopback, with the offline rate of the same model beside it.

    python benchmarks/serve_load.py [--model models/conll03-en] [--seconds 10]
        [--requests 3000] [--soak 20000] [--soak-every 2500] [--client auto|wrk|python]
        [--json docs/bench/serve_load.json] [--doc docs/serving.md]

Starts `rnner serve` on a free loopback port (nothing leaves the machine), then for each
concurrency (1, 8, 64) and request size (one CoNLL-2003 dev sentence; 50 sentences as
`texts`) runs closed-loop clients on keep-alive connections for at most `--requests` requests
or `--seconds` seconds: requests/s, tokens/s (tokens the server reports tagging), p50/p99
latency, errors (any non-200 or failed connection). Then `--soak` one-sentence requests at
concurrency 64, with the server's resident memory (VmRSS) read before and after every
`--soak-every` of them: a curve that flattens is the heap reaching the size the load needs,
one that keeps climbing a leak. In the same run, the offline rate of the same weights
(`rnner.bench.bench_infer`, as benchmarks/bench.py measures inference) at batch 256 over
CoNLL-2003 dev, one sentence per row (the shape of the server's work: each text is its own
document), with as many torch threads as the server's model uses in all (`--threads` times
`--workers`).

The client runs on the same cores as the server, so its own CPU time is taken from the
server's: `wrk` (C, one thread; Debian's `wrk` package) when it is installed, with a Lua
script that cycles through the pre-encoded bodies and counts tokens and non-200 answers;
otherwise (or with `--client python`) a minimal asyncio HTTP/1.1 client. Both take little
CPU per request. wrk drops the requests in flight when its time is up, so the 50-sentence
rows (requests of seconds at concurrency 64) always use the asyncio client, which waits for
them. The table says which one ran. The JSON result holds
everything; `--doc` rewrites the table between the serve_load markers of docs/serving.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
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


def encode_request(body: bytes) -> bytes:
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


# The Lua side of the wrk client: `wrk ... -s SCRIPT -- BODIES LIMIT` sends the JSON lines of
# BODIES in turn (each thread from its own start), stops after about LIMIT answers (those in
# flight then are counted too), and prints one
# JSON line of counts and latency percentiles at the end.
WRK_SCRIPT = r"""
local ffi = require("ffi")  -- wrk runs until -d unless sent SIGINT: sent at LIMIT answers
ffi.cdef("int kill(int pid, int sig); int getpid(void);")
local bodies = {}
n, tokens, bad = 0, 0, 0
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  limit = tonumber(args[2])
  i = 0
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  i = i % #bodies + 1
  return wrk.format(nil, "/v1/ner", nil, bodies[i])
end
function response(status, headers, body)
  n = n + 1
  if status == 200 then
    tokens = tokens + tonumber(body:match('"tokens": *(%d+)}$') or 0)
  else
    bad = bad + 1
  end
  if n == limit then ffi.C.kill(ffi.C.getpid(), 2) end
end
function done(summary, latency, requests)
  local t, b = 0, 0
  for _, th in ipairs(threads) do t = t + th:get("tokens"); b = b + th:get("bad") end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "us": %d, "tokens": %d, "non200": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"socket_errors": %d}\n',
    summary.requests, summary.duration, t, b, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout))
end
"""


class Wrk:
    """Closed-loop load from `wrk` (one thread: the client's CPU time is the server's loss)."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.script = workdir / "serve_load.lua"
        self.script.write_text(WRK_SCRIPT, encoding="utf-8")
        self.bodies: dict[int, Path] = {}

    def load(
        self, port: int, bodies: list[bytes], concurrency: int, max_requests: int, seconds: float
    ) -> dict[str, Any]:
        path = self.bodies.get(id(bodies))
        if path is None:
            path = self.workdir / f"bodies{len(self.bodies)}.jsonl"
            path.write_bytes(b"".join(b + b"\n" for b in bodies))
            self.bodies[id(bodies)] = path
        cmd = [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "120s",
            "--latency",
            "-s",
            str(self.script),
            f"http://127.0.0.1:{port}",
            "--",
            str(path),
            str(max_requests),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        wall = r["us"] / 1e6
        errors = r["non200"] + r["socket_errors"]
        return {
            "concurrency": concurrency,
            "requests": r["requests"],
            "seconds": wall,
            "requests_per_s": r["requests"] / wall,
            "tokens_per_s": r["tokens"] / wall,
            "p50_ms": r["p50_us"] / 1000,
            "p99_ms": r["p99_us"] / 1000,
            "errors": errors,
            "error_examples": [f"{r['non200']} non-200, {r['socket_errors']} socket errors"]
            if errors
            else [],
        }


def python_load(
    port: int, bodies: list[bytes], concurrency: int, max_requests: int, seconds: float
) -> dict[str, Any]:
    requests = [encode_request(b) for b in bodies]
    return asyncio.run(load(port, requests, concurrency, max_requests, seconds))


# --- offline ---------------------------------------------------------------------------------


def offline(model: str, data_root: Path, reps: int) -> float:
    """Tokens/s of the same weights at batch 256 over CoNLL-2003 dev, one sentence per row:
    the shape of the server's work, where every text is its own document
    (`rnner.bench.bench_infer`, the inference timing of benchmarks/bench.py)."""
    import dataclasses

    import numpy as np
    import torch

    from rnner import bench, conll, pipeline, routing
    from rnner.predict import RoutedTagger, Tagger

    tagger = Tagger.load(model)
    if isinstance(tagger, RoutedTagger):
        # every text of the load is one sentence, which a routed model reads with its
        # caseless model (rnner.routing): that is the model whose offline rate compares
        tagger = tagger.taggers[routing.CASELESS]
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
    client = r.get("client", "python")
    who = (
        "`wrk` (one thread; the 50-sentence rows from a Python asyncio client, which waits for "
        "requests in flight at the deadline)"
        if client == "wrk"
        else "a Python asyncio client"
    ) + " on the same machine"
    lines = [
        f"Measured {r['date']} on {r['machine']} ({r['cpus']} CPUs; {r['note']}); server "
        f"`--threads {r['threads']} --workers {r.get('workers', 1)}`, load from {who}.",
        "",
        "| request | concurrency | requests/s | tokens/s | p50 ms | p99 ms | errors |"
        " tokens/s vs offline |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["runs"]:
        lines.append(
            f"| {row['sentences']} sentence{'s' if row['sentences'] > 1 else ''} "
            f"| {row['concurrency']} | {row['requests_per_s']:.0f} | {row['tokens_per_s']:.0f} "
            f"| {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['errors']} "
            f"| {100 * row['tokens_per_s'] / off:.0f} % |"
        )
    soak = r["soak"]
    curve = soak.get("rss_mb") or [
        [0, soak["rss_before_mb"]],
        [soak["requests"] // 2, soak["rss_half_mb"]],
        [soak["requests"], soak["rss_after_mb"]],
    ]
    lines += [
        "",
        f"Offline, same weights, {r['threads'] * r.get('workers', 1)} torch thread(s) (the "
        f"server's in all), batch 256 over CoNLL-2003 dev, one sentence per row "
        f"(`rnner.bench.bench_infer`): {off:.0f} tokens/s; the last column is the server's "
        "tokens/s against it.",
        "",
        f"Memory: {soak['requests']} one-sentence requests at concurrency 64 "
        f"({soak['errors']} errors, {soak['requests_per_s']:.0f} requests/s), server RSS "
        "after so many requests:",
        "",
        "| requests | " + " | ".join(f"{n:,}" for n, _ in curve) + " |",
        "|---|" + "---:|" * len(curve),
        "| RSS MB | " + " | ".join(f"{mb:.0f}" for _, mb in curve) + " |",
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
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="the server's --workers (model threads side by side, each with --threads torch "
        "threads); the offline rate is measured with threads x workers torch threads",
    )
    p.add_argument("--seconds", type=float, default=10.0, help="at most, per load level")
    p.add_argument("--requests", type=int, default=3000, help="at most, per load level")
    p.add_argument(
        "--soak", type=int, default=20000, help="one-sentence requests at c=64, for memory"
    )
    p.add_argument("--soak-every", type=int, default=2500, help="requests between RSS readings")
    p.add_argument(
        "--client",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="load generator (auto: wrk when installed)",
    )
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
    one = [json.dumps({"text": s}).encode() for s in sents]
    fifty = [
        json.dumps({"texts": sents[i : i + 50]}).encode() for i in range(0, len(sents) - 50, 50)
    ]
    if not fifty:
        raise SystemExit(f"{data_root}: dev.txt has {len(sents)} sentences; 51 at least are needed")
    client = args.client
    if client == "auto":
        client = "wrk" if shutil.which("wrk") else "python"
    workdir = tempfile.TemporaryDirectory(prefix="serve_load")
    drive = Wrk(Path(workdir.name)).load if client == "wrk" else python_load
    # wrk drops the requests in flight at its deadline (it counts answers within -d only); at
    # concurrency 64 a 50-sentence request takes seconds, so those rows would lose a large
    # share of their work: the asyncio client, which waits for them, drives those rows.
    drivers = {1: (client, drive), 50: ("python", python_load)}

    import torch

    torch.set_num_threads(threads * args.workers)
    off = offline(args.model, data_root, args.offline_reps)
    print(f"offline b=256: {off:.0f} tokens/s; client: {client}", flush=True)

    server = Server(args.model, threads, ["--workers", str(args.workers)])
    runs = []
    try:
        drive(server.port, one, 8, 200, 30)  # warm-up: allocations, caches
        for size, bodies in ((1, one), (50, fifty)):
            for c in (1, 8, 64):
                name, load_with = drivers[size]
                row = load_with(server.port, bodies, c, args.requests, args.seconds)
                row["sentences"], row["client"] = size, name
                runs.append(row)
                print(
                    json.dumps({k: v for k, v in row.items() if k != "error_examples"}), flush=True
                )
        # The soak: RSS read every `--soak-every` requests, so that a plateau shows.
        curve = [[0, server.rss_mb()]]
        parts = []
        while curve[-1][0] < args.soak:
            n = min(args.soak_every, args.soak - curve[-1][0])
            parts.append(drive(server.port, one, 64, n, 3600))
            curve.append([curve[-1][0] + parts[-1]["requests"], server.rss_mb()])
            print(f"soak: {curve[-1][0]} requests, RSS {curve[-1][1]:.0f} MB", flush=True)
            if not parts[-1]["requests"]:
                break
        requests = sum(p["requests"] for p in parts)
        seconds = sum(p["seconds"] for p in parts)
        soak = {
            "requests": requests,
            "errors": sum(p["errors"] for p in parts),
            "requests_per_s": requests / seconds if seconds else 0.0,  # --soak 0: none sent
            "rss_mb": curve,
        }
        print(json.dumps(soak), flush=True)
    finally:
        exit_code = server.stop()
        workdir.cleanup()
    load_avg = os.getloadavg()
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": cpu_model(),
        "cpus": os.cpu_count(),
        "threads": threads,
        "workers": args.workers,
        "note": args.note or f"load average {load_avg[0]:.1f} at the end",
        "load_average": load_avg,
        "model": args.model,
        "offline_tokens_per_s": off,
        "client": client,
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
