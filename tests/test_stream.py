"""`rnner predict` as a stream: pipes answer before their input ends, bad lines stop the run
or are skipped and counted, output files appear whole or not at all, memory stays flat."""

from __future__ import annotations

import fcntl
import gc
import json
import os
import queue
import struct
import subprocess
import sys
import termios
import threading
import time
import tracemalloc
from pathlib import Path
from typing import IO

import pytest

from rnner import stream
from rnner.cli import main
from rnner.conll import parse_conll
from rnner.predict import Tagger

SENTENCES = [
    "Peter Blackburn visited Brussels on Monday.",
    "EU rejects German call to boycott British lamb.",
    "Germany 's representative to the European Union said on Wednesday that it was wrong.",
    "",
    "Fischler proposed EU-wide measures after reports from Britain and France.",
]
TIMEOUT = 90.0  # seconds: torch imports slowly on a busy machine


def cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def records(text: str) -> list[dict]:
    return [json.loads(line) for line in text.split("\n") if line]


@pytest.fixture(scope="module")
def tagger(tiny_run: Path) -> Tagger:
    return Tagger.load(tiny_run)


def child_env() -> dict[str, str]:
    # One thread: two threads fighting training jobs for two cores run ~30x slower. Buffered
    # stdout, as users have it: records must come out of flushes, not of PYTHONUNBUFFERED.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return {**env, "OMP_NUM_THREADS": "1"}


def drain(pipe: IO[bytes], into: queue.Queue[bytes | None]) -> None:
    for line in pipe:
        into.put(line)
    into.put(None)


def take(lines: queue.Queue[bytes | None], n: int, deadline: float) -> list[dict]:
    got: list[dict] = []
    while len(got) < n:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        got.append(json.loads(line))
    return got


# --- pipes ---------------------------------------------------------------------------------


def test_stdin_pipe_streams_before_input_ends(tiny_run: Path) -> None:
    """Records come back while stdin is still open: one line at once, then more than a chunk;
    every input line, blank ones included, gives exactly one record in order."""
    master, slave = os.openpty()  # stderr a terminal: the progress bar shows for a pipe too
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 0 cols: no bar
    proc = subprocess.Popen(
        [sys.executable, "-m", "rnner.cli", "predict", str(tiny_run), "--format", "jsonl"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=child_env(),
    )
    os.close(slave)
    assert proc.stdin is not None and proc.stdout is not None
    out: queue.Queue[bytes | None] = queue.Queue()
    threading.Thread(target=drain, args=(proc.stdout, out), daemon=True).start()
    err = bytearray()

    def read_terminal() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            err.extend(data)

    err_thread = threading.Thread(target=read_terminal, daemon=True)
    err_thread.start()
    try:
        # One line, and wait: a quiet pipe does not hold back a part-filled chunk.
        proc.stdin.write(b"Peter Blackburn visited Brussels.\n")
        proc.stdin.flush()
        first = take(out, 1, time.monotonic() + TIMEOUT)
        assert [(r["line"], r["text"]) for r in first] == [(1, "Peter Blackburn visited Brussels.")]

        # More than a chunk at once, still without closing stdin.
        n = stream.CHUNK_LINES + 500
        texts = [SENTENCES[i % len(SENTENCES)] for i in range(n)]
        proc.stdin.write("".join(t + "\n" for t in texts).encode())
        proc.stdin.flush()
        more = take(out, n, time.monotonic() + TIMEOUT)
        assert proc.poll() is None  # still running: stdin is open
        assert len(more) == n
    finally:
        proc.stdin.close()
    assert proc.wait(TIMEOUT) == 0
    assert out.get(timeout=TIMEOUT) is None  # nothing after the last record
    err_thread.join(TIMEOUT)
    os.close(master)

    assert [r["line"] for r in more] == list(range(2, n + 2))
    assert [r["text"] for r in more] == texts
    blank = [r for r in more if r["text"] == ""]
    assert len(blank) == texts.count("") > 0 and all(r["spans"] == [] for r in blank)
    assert b"tagging" in err and b"Traceback" not in err


# --- bad lines -----------------------------------------------------------------------------


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "in.txt"
    path.write_bytes(
        b"Peter Blackburn visited Brussels.\n"
        b"M\xfcnchen is not UTF-8.\n"
        b"\n"
        b"binary\x00data\n"
        b"EU rejects German call.\n"
    )
    return path


def test_skip_bad_lines_and_count_them(
    capsys: pytest.CaptureFixture[str], tiny_run: Path, bad_file: Path
) -> None:
    code, out, err = cli(capsys, "predict", tiny_run, "--input", bad_file, "--on-error", "skip")
    assert (code, err) == (0, f"{bad_file}: skipped 2 bad line(s)\n")  # no bar: not a terminal
    got = records(out)
    assert [(r["line"], r["text"]) for r in got] == [
        (1, "Peter Blackburn visited Brussels."),
        (3, ""),
        (5, "EU rejects German call."),
    ]


def test_bad_line_fails_with_its_line_number(
    capsys: pytest.CaptureFixture[str], tiny_run: Path, bad_file: Path
) -> None:
    code, out, err = cli(capsys, "predict", tiny_run, "--input", bad_file, "--quiet")
    assert (code, err) == (2, f"{bad_file}:2: not UTF-8 text\n")
    bad_file.write_bytes(bad_file.read_bytes().replace(b"\xfc", b"u"))
    code, out, err = cli(capsys, "predict", tiny_run, "--input", bad_file, "--quiet")
    assert (code, err) == (2, f"{bad_file}:4: binary data (NUL byte)\n")


def test_overlong_lines_are_bad_lines(
    capsys: pytest.CaptureFixture[str],
    tiny_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The limit counts characters; a line far past it is read in blocks and dropped."""
    monkeypatch.setattr(stream, "MAX_LINE_CHARS", 1000)
    monkeypatch.setattr(stream, "READ_SIZE", 4096)  # the long line spans many reads
    path = tmp_path / "long.txt"
    lines = ["x" * 1000, "é" * 1001, "y" * 200_000, "Peter Blackburn visited Brussels."]
    path.write_text("\n".join(lines), encoding="utf-8")  # no final newline
    code, out, err = cli(capsys, "predict", tiny_run, "--input", path, "--on-error", "skip")
    assert (code, err) == (0, f"{path}: skipped 2 bad line(s)\n")
    assert [(r["line"], r["text"]) for r in records(out)] == [(1, lines[0]), (4, lines[3])]
    code, _, err = cli(capsys, "predict", tiny_run, "--input", path)
    assert (code, err) == (2, f"{path}:2: line longer than 1000 characters\n")


def test_byte_order_mark_and_crlf(
    capsys: pytest.CaptureFixture[str], tiny_run: Path, tmp_path: Path
) -> None:
    path = tmp_path / "windows.txt"
    path.write_bytes(b"\xef\xbb\xbfEU rejects German call.\r\n\r\nPeter Blackburn\r\n")
    code, out, _ = cli(capsys, "predict", tiny_run, "--input", path)
    assert code == 0
    got = records(out)
    assert [r["text"] for r in got] == ["EU rejects German call.", "", "Peter Blackburn"]
    for r in got:
        assert all(r["text"][s["start"] : s["end"]] == s["text"] for s in r["spans"])


# --- CoNLL in, CoNLL out -------------------------------------------------------------------

CONLL_IN = (
    "-DOCSTART- -X- -X- O\n\n"
    "EU NNP I-NP\nrejects VBZ I-VP\nGerman JJ I-NP\ncall NN I-NP\n\n\n"
    "Peter NNP I-NP\r\nBlackburn NNP I-NP\n\n"
    "-DOCSTART- -X- -X- O\n\n"
    "BRUSSELS NNP I-NP\n1996-08-22 CD I-NP"  # no final newline
)


def test_conll_round_trip(
    capsys: pytest.CaptureFixture[str], tiny_run: Path, tmp_path: Path
) -> None:
    """Same tokens out, `word TAG` rows, a blank line after each sentence, -DOCSTART- kept
    (so documents survive for models with document context)."""
    path = tmp_path / "in.conll"
    path.write_text(CONLL_IN, encoding="utf-8")
    code, out, err = cli(capsys, "predict", tiny_run, "--input", path, "--format", "conll")
    assert (code, err) == (0, "")
    assert out.startswith("-DOCSTART- O\n\nEU ")
    assert out.endswith("\n\n") and not out.endswith("\n\n\n")
    blocks = out[:-2].split("\n\n")
    assert [len(b.splitlines()) for b in blocks] == [1, 4, 2, 1, 2]
    assert all(len(row.split()) == 2 for b in blocks for row in b.splitlines())
    back = list(parse_conll(out.split("\n"), "<output>"))
    expected = list(parse_conll(CONLL_IN.split("\n"), "<input>", labelled=False))
    assert (
        [s.tokens for s in back]
        == [s.tokens for s in expected]
        == [("EU", "rejects", "German", "call"), ("Peter", "Blackburn"), ("BRUSSELS", "1996-08-22")]
    )
    assert [s.doc_id for s in back] == [s.doc_id for s in expected] == [0, 0, 1]


def test_conll_without_docstart_writes_none(
    capsys: pytest.CaptureFixture[str], tiny_run: Path, tmp_path: Path
) -> None:
    path = tmp_path / "in.conll"
    path.write_text("EU\nrejects\n\nPeter\nBlackburn\n", encoding="utf-8")
    code, out, _ = cli(capsys, "predict", tiny_run, "--input", path, "--format", "conll")
    assert code == 0
    assert "DOCSTART" not in out
    assert [row.split()[0] for row in out.splitlines() if row] == [
        "EU",
        "rejects",
        "Peter",
        "Blackburn",
    ]


def test_conll_bad_line_skipped_keeps_its_sentence(
    capsys: pytest.CaptureFixture[str], tiny_run: Path, tmp_path: Path
) -> None:
    path = tmp_path / "in.conll"
    path.write_bytes(b"EU NNP\nrejects\nM\xfcnchen NNP\nGerman JJ\n\nPeter NNP\n")
    code, _, err = cli(capsys, "predict", tiny_run, "--input", path, "--format", "conll")
    assert (code, err) == (2, f"{path}:2: expected 2 columns, found 1\n")
    code, out, err = cli(
        capsys, "predict", tiny_run, "--input", path, "--format", "conll", "--on-error", "skip"
    )
    assert (code, err) == (0, f"{path}: skipped 2 bad line(s)\n")
    sents = [[row.split()[0] for row in b.splitlines()] for b in out.strip().split("\n\n")]
    assert sents == [["EU", "German"], ["Peter"]]


# --- the output file -----------------------------------------------------------------------


def test_output_file_untouched_by_a_failure_mid_file(
    capsys: pytest.CaptureFixture[str],
    tiny_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Several chunks are tagged and written before the bad line; none of it shows."""
    monkeypatch.setattr(stream, "CHUNK_LINES", 50)
    path = tmp_path / "in.txt"
    good = [SENTENCES[i % len(SENTENCES)] for i in range(170)]
    path.write_bytes("".join(t + "\n" for t in good).encode() + b"\xff\xfe bad\nlast\n")
    out_dir = tmp_path / "out"
    target = out_dir / "tagged.jsonl"
    code, _, err = cli(capsys, "predict", tiny_run, "--input", path, "--output", target)
    assert (code, err) == (2, f"{path}:171: not UTF-8 text\n")
    assert not target.exists()
    assert list(out_dir.iterdir()) == []  # no temporary file left either

    target.write_text("old results\n", encoding="utf-8")
    code, _, _ = cli(capsys, "predict", tiny_run, "--input", path, "--output", target)
    assert code == 2
    assert target.read_text(encoding="utf-8") == "old results\n"
    assert [p.name for p in out_dir.iterdir()] == ["tagged.jsonl"]

    code, out, err = cli(
        capsys, "predict", tiny_run, "--input", path, "--output", target, "--on-error", "skip"
    )
    assert (code, out) == (0, "")
    assert [r["line"] for r in records(target.read_text(encoding="utf-8"))] == [*range(1, 171), 172]


# --- chunking and memory -------------------------------------------------------------------


def test_chunks_end_at_size_weight_or_quiet_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stream, "CHUNK_LINES", 3)
    monkeypatch.setattr(stream, "CHUNK_CHARS", 10)
    items = ["a", "b", "c", "d", None, "e", "x" * 9, "f", "g", None, None]
    assert list(stream._chunks(items, len)) == [["a", "b", "c"], ["d"], ["e", "x" * 9], ["f", "g"]]


def peak_bytes(tagger: Tagger, source: Path, target: Path) -> int:
    gc.collect()  # garbage of earlier tests would count against this run's peak
    tracemalloc.start()
    try:
        assert stream.predict_stream(tagger, str(source), str(target), progress=False) == 0
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_input(
    tagger: Tagger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """4x the input: about the same peak when chunked; ~4x when it is all one chunk (which
    shows that the measurement can see the difference)."""
    monkeypatch.setattr(stream, "CHUNK_LINES", 300)
    texts = ["EU rejects German call.", "Peter Blackburn visited Brussels.", ""]
    small, large = tmp_path / "small.txt", tmp_path / "large.txt"
    n = 1500
    small.write_text("".join(texts[i % 3] + "\n" for i in range(n)), encoding="utf-8")
    large.write_text("".join(texts[i % 3] + "\n" for i in range(4 * n)), encoding="utf-8")
    out = tmp_path / "out.jsonl"
    warm_up = tmp_path / "warm_up.txt"
    warm_up.write_text("".join(t + "\n" for t in texts * 100), encoding="utf-8")
    peak_bytes(tagger, warm_up, out)  # caches, lazy imports
    chunked = peak_bytes(tagger, small, out), peak_bytes(tagger, large, out)
    assert len(out.read_text(encoding="utf-8").splitlines()) == 4 * n
    assert chunked[1] < 1.5 * chunked[0], chunked

    monkeypatch.setattr(stream, "CHUNK_LINES", 10**9)
    whole = peak_bytes(tagger, small, out), peak_bytes(tagger, large, out)
    assert whole[1] > 2.5 * whole[0], whole
    assert whole[1] > 2.5 * chunked[1], (whole, chunked)


def test_output_to_a_fifo_stays_a_fifo(tagger: Tagger, tmp_path: Path) -> None:
    """`--output /dev/null` once replaced /dev/null with a regular file (the partial file was
    renamed over it): a target that is not a regular file is written in place."""
    import os
    import stat
    import threading

    source = tmp_path / "in.txt"
    source.write_text("Peter Blackburn visited Brussels .\n", encoding="utf-8")
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    assert stream.predict_stream(tagger, str(source), str(fifo), progress=False) == 0
    reader.join(timeout=30)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert json.loads(got[0])["text"] == "Peter Blackburn visited Brussels ."
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.fifo"]


def test_atomic_write_to_a_fifo_stays_a_fifo(tmp_path: Path) -> None:
    import os
    import stat
    import threading

    from rnner import files

    fifo = tmp_path / "p"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
    reader.start()
    files.write_text(fifo, "hello\n")
    reader.join(timeout=30)
    assert got == [b"hello\n"] and stat.S_ISFIFO(os.stat(fifo).st_mode)
