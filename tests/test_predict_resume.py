"""`rnner predict --input FILE --output FILE` stopped by a real SIGTERM or SIGINT keeps its
finished chunks, says how far it got and exits 130; `--resume` then finishes the job and the
output is byte-identical to an uninterrupted run (the shipped model, real CoNLL-2003 text)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "conll03-en"


def predict(*args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rnner.cli",
        "predict",
        str(MODEL),
        "--quiet",
        "--threads",
        "1",
        *args,
    ]


@pytest.fixture(scope="module")
def raw_text(conll_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """5,000 lines of raw text (dev sentences, then train): three chunks of CHUNK_LINES."""
    lines, cur = [], []
    for split in ("dev", "train"):
        for line in (conll_dir / f"{split}.txt").read_text(encoding="utf-8").splitlines():
            if not line.strip() or line.startswith("-DOCSTART-"):
                if cur:
                    lines.append(" ".join(cur))
                    cur = []
                continue
            cur.append(line.split()[0])
    path = tmp_path_factory.mktemp("resume") / "big.txt"
    path.write_text("\n".join(lines[:5000]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def conll_text(conll_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CoNLL-2003 dev and test, one file: 7,150 sentences and -DOCSTART- lines, four chunks."""
    path = tmp_path_factory.mktemp("resume") / "big.conll"
    path.write_text(
        "".join(
            (conll_dir / f"{split}.txt").read_text(encoding="utf-8") for split in ("dev", "test")
        ),
        encoding="utf-8",
    )
    return path


def interrupt(cmd: list[str], state: Path, sig: signal.Signals) -> subprocess.CompletedProcess:
    """Run `cmd`, send `sig` once its first chunk is recorded, and wait for it."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while True:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        try:
            if json.loads(state.read_text(encoding="utf-8"))["items"] > 0:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.parametrize(("fmt", "sig"), [("jsonl", signal.SIGTERM), ("conll", signal.SIGINT)])
def test_interrupted_then_resumed_equals_one_run(
    raw_text: Path, conll_text: Path, tmp_path: Path, fmt: str, sig: signal.Signals
) -> None:
    source = raw_text if fmt == "jsonl" else conll_text
    whole = tmp_path / "whole.out"
    subprocess.run(
        predict("--input", str(source), "--output", str(whole), "--format", fmt), check=True
    )
    out = tmp_path / "tagged.out"
    partial = tmp_path / "tagged.out.partial"
    state = tmp_path / "tagged.out.partial.json"
    cmd = predict("--input", str(source), "--output", str(out), "--format", fmt)

    stopped = interrupt(cmd, state, sig)
    assert stopped.returncode == 130, stopped.stderr
    done = json.loads(state.read_text(encoding="utf-8"))
    unit = "lines" if fmt == "jsonl" else "items"
    assert stopped.stderr.strip().splitlines()[-1] == (
        f"{sig.name}: stopped after {done['items']} input {unit} of {source}; partial output "
        f"in {partial}; the same command with --resume continues from there"
    )
    assert done["items"] % 2000 == 0 and done["items"] > 0  # whole chunks only
    assert not out.exists()
    assert partial.stat().st_size == done["output_bytes"]
    assert whole.read_bytes().startswith(partial.read_bytes())
    assert len(partial.read_bytes()) < len(whole.read_bytes())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    with partial.open("ab") as f:  # a chunk cut short by a second signal is redone
        f.write(b'{"line": 99')
    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert out.read_bytes() == whole.read_bytes()
    assert not partial.exists() and not state.exists()


def test_resume_refuses_a_changed_input_or_nothing_to_resume(
    raw_text: Path, tmp_path: Path
) -> None:
    source = tmp_path / "in.txt"
    source.write_bytes(raw_text.read_bytes())
    out = tmp_path / "o.jsonl"
    cmd = predict("--input", str(source), "--output", str(out))
    nothing = subprocess.run([*cmd, "--resume"], capture_output=True, text=True)
    assert nothing.returncode == 2
    assert nothing.stderr.strip() == (
        f"{out}.partial.json: nothing to resume (no interrupted "
        "run of this output); run without --resume"
    )
    stopped = interrupt(cmd, Path(f"{out}.partial.json"), signal.SIGTERM)
    assert stopped.returncode == 130
    with source.open("a", encoding="utf-8") as f:
        f.write("One more line from Reuters.\n")
    changed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True)
    assert changed.returncode == 2
    assert changed.stderr.startswith(
        f"{out}.partial.json: the interrupted run had a different input_bytes"
    )
    os.unlink(f"{out}.partial")
