"""Does `rnner predict` tag a large file in constant memory, and how fast?

    python benchmarks/predict_scale.py RUN_DIR [--mb 50] [--format jsonl] [--threads N] [--json]

Writes N MB of news-like text (sentences of the CoNLL-2003 dev set, detokenised, one to four
to a line, in a seeded random order), then runs the real command,

    python -m rnner.cli predict RUN_DIR --input FILE --output /dev/null --format jsonl --quiet

in a child process, sampling its resident memory (/proc/PID/status: VmRSS, VmHWM) and how far
it has read the input (/proc/PID/fdinfo: the file offset) every few milliseconds. Reported:
MB/s and tokens/s (wall time, with and without the start-up before the first byte is read),
and the resident memory when the reader passes 25, 50, 75 and 100% of the input: flat numbers
are the claim. The last sample ("end") falls inside the last chunk's tagging, where memory is
at its working peak rather than freshly trimmed, so it is reported apart. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MIB = 1 << 20
MILESTONES = (0.25, 0.5, 0.75, 1.0)
NO_SPACE_BEFORE = {
    ",",
    ".",
    ":",
    ";",
    "!",
    "?",
    ")",
    "]",
    "%",
    "'s",
    "'S",
    "n't",
    "'re",
    "'ve",
    "'ll",
    "'d",
    "'m",
}
NO_SPACE_AFTER = {"(", "[", "$"}


# --- the input -------------------------------------------------------------------------------


def detokenize(tokens: Sequence[str]) -> str:
    """CoNLL tokens back to running text: `Germany 's` -> `Germany's`, `( AP )` -> `(AP)`."""
    out: list[str] = []
    glue = True
    for tok in tokens:
        if out and not glue and tok not in NO_SPACE_BEFORE:
            out.append(" ")
        out.append(tok)
        glue = tok in NO_SPACE_AFTER
    return "".join(out)


def news_lines(sentences: Sequence[Sequence[str]], seed: int) -> Iterator[tuple[str, int]]:
    """Endless lines of one to four consecutive dev sentences, with their CoNLL token counts."""
    rng = random.Random(seed)
    usable = [s for s in sentences if len(s) > 1]  # drop bare datelines and headings
    while True:
        start = rng.randrange(len(usable))
        group = usable[start : start + rng.randint(1, 4)]
        yield " ".join(detokenize(s) for s in group), sum(len(s) for s in group)


@dataclass
class Input:
    path: str
    bytes: int
    lines: int
    tokens: int  # CoNLL tokens; rnner's tokenizer splits the detokenised text about the same


def write_input(path: Path, mb: float, dev: Path, seed: int) -> Input:
    from rnner.conll import read_conll

    sentences = [s.tokens for s in read_conll(dev)]
    target = int(mb * MIB)
    size = lines = tokens = 0
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for text, n in news_lines(sentences, seed):
            data = text + "\n"
            f.write(data)
            size += len(data.encode("utf-8"))
            lines += 1
            tokens += n
            if size >= target:
                break
    return Input(str(path), size, lines, tokens)


# --- watching the child ----------------------------------------------------------------------


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM in bytes."""
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


def _input_fd(pid: int, path: str) -> int | None:
    real = os.path.realpath(path)
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == real:
                return int(fd)
        except OSError:
            continue
    return None


def _offset(pid: int, fd: int) -> int:
    with open(f"/proc/{pid}/fdinfo/{fd}", encoding="ascii") as f:
        for line in f:
            if line.startswith("pos:"):
                return int(line.split()[1])
    return 0


@dataclass
class Sample:
    seconds: float
    offset: int
    rss: int
    hwm: int


@dataclass
class Result:
    input: Input
    command: list[str]
    exit_code: int
    seconds: float  # whole command, start-up included
    startup_seconds: float  # until the first byte of input was read
    mb_per_s: float
    tokens_per_s: float
    mb_per_s_tagging: float  # start-up excluded
    tokens_per_s_tagging: float
    max_rss_mib: float  # getrusage of the finished child
    rss_at: dict[str, dict[str, float]] = field(default_factory=dict)  # "25%" -> MiB
    rss_growth_mib: float = 0.0  # VmRSS at 100% minus at 25%
    samples: int = 0


def _mark(s: Sample) -> dict[str, float]:
    return {
        "seconds": round(s.seconds, 2),
        "rss_mib": round(s.rss / MIB, 1),
        "peak_rss_mib": round(s.hwm / MIB, 1),
    }


def watch(command: list[str], info: Input, env: dict[str, str], interval: float) -> Result:
    import resource

    started = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    fd: int | None = None
    samples: list[Sample] = []
    while proc.poll() is None:
        try:
            if fd is None:
                fd = _input_fd(proc.pid, info.path)
            offset = _offset(proc.pid, fd) if fd is not None else 0
            mem = _status(proc.pid)
        except (OSError, KeyError, ValueError):  # exiting between two reads
            break
        samples.append(
            Sample(time.perf_counter() - started, offset, mem.get("VmRSS", 0), mem.get("VmHWM", 0))
        )
        time.sleep(interval)
    _, err = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.stderr.write(err.decode(errors="replace"))
    max_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024  # KiB on Linux

    first = next((s.seconds for s in samples if s.offset > 0), seconds)
    rss_at: dict[str, dict[str, float]] = {}
    for mark in MILESTONES:
        # The first sample at or past the mark. The reader's offset moves only while a chunk
        # is read, right after the previous one was tagged and its memory trimmed, so every
        # mark samples the same phase; the last sample falls inside the last chunk's tagging,
        # and is reported apart ("end") for that reason.
        past = [s for s in samples if s.offset >= mark * info.bytes]
        if past:
            rss_at[f"{mark:.0%}"] = _mark(past[0])
    if samples:
        rss_at["end"] = _mark(samples[-1])
    growth = (
        rss_at["100%"]["rss_mib"] - rss_at["25%"]["rss_mib"]
        if "25%" in rss_at and "100%" in rss_at
        else float("nan")
    )
    tagging = max(seconds - first, 1e-9)
    return Result(
        input=info,
        command=command,
        exit_code=proc.returncode,
        seconds=round(seconds, 2),
        startup_seconds=round(first, 2),
        mb_per_s=round(info.bytes / MIB / seconds, 3),
        tokens_per_s=round(info.tokens / seconds),
        mb_per_s_tagging=round(info.bytes / MIB / tagging, 3),
        tokens_per_s_tagging=round(info.tokens / tagging),
        max_rss_mib=round(max_rss / MIB, 1),
        rss_at=rss_at,
        rss_growth_mib=round(growth, 1),
        samples=len(samples),
    )


# --- command line ----------------------------------------------------------------------------


def default_dev() -> Path:
    from rnner.data import resolve_split

    return resolve_split("conll2003", "dev")


def table(r: Result) -> str:
    i = r.input
    lines = [
        f"input      {i.bytes / MIB:.1f} MiB, {i.lines:,} lines, {i.tokens:,} tokens ({i.path})",
        f"command    {' '.join(r.command)}  (exit {r.exit_code})",
        f"time       {r.seconds:.1f} s ({r.startup_seconds:.1f} s start-up)",
        f"speed      {r.mb_per_s:.2f} MiB/s, {r.tokens_per_s:,.0f} tokens/s overall; "
        f"{r.mb_per_s_tagging:.2f} MiB/s, {r.tokens_per_s_tagging:,.0f} tokens/s tagging",
        "memory     input read   time      RSS     peak RSS",
    ]
    for mark, m in r.rss_at.items():
        lines.append(
            f"           {mark:>10s} {m['seconds']:6.1f} s {m['rss_mib']:7.1f} MiB"
            f" {m['peak_rss_mib']:7.1f} MiB"
        )
    lines.append(
        f"           RSS from 25% to 100%: {r.rss_growth_mib:+.1f} MiB; "
        f"max RSS (getrusage) {r.max_rss_mib:.1f} MiB; {r.samples} samples"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", nargs="?", help="run directory (default: the shipped model)")
    p.add_argument("--mb", type=float, default=50.0, help="input size in MiB (default 50)")
    p.add_argument("--format", choices=("jsonl", "text"), default="jsonl")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads of the child (OMP_NUM_THREADS; 0: torch's default)",
    )
    p.add_argument("--dev", type=Path, help="CoNLL file to draw sentences from (default: dev)")
    p.add_argument(
        "--input",
        type=Path,
        help="where to write the generated text (kept); default: a temporary file",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--interval", type=float, default=0.05, help="sampling period, seconds")
    p.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    args = p.parse_args(argv)
    if not Path("/proc/self/status").is_file():
        p.error("needs Linux /proc to watch the child's memory")

    from rnner.runs import default_model_path

    run_dir = str(args.run_dir or default_model_path())
    with tempfile.TemporaryDirectory(prefix="predict_scale.") as tmp:
        path = args.input or Path(tmp) / "news.txt"
        info = write_input(path, args.mb, args.dev or default_dev(), args.seed)
        command = [
            sys.executable,
            "-m",
            "rnner.cli",
            "predict",
            run_dir,
            "--input",
            str(path),
            "--output",
            os.devnull,
            "--format",
            args.format,
            "--batch-size",
            str(args.batch_size),
            "--quiet",
        ]
        env = dict(os.environ)
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        result = watch(command, info, env, args.interval)
    if args.json:
        out: dict[str, Any] = asdict(result)
        out["threads"] = args.threads or None
        print(json.dumps(out, indent=2))
    else:
        print(table(result))
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
