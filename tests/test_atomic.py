"""Atomic writes: a SIGKILL at any moment leaves the old file or the new one, never a torn one;
an exception in the middle leaves the target as it was and no temporary file behind."""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rnner import files

SIZE = 2 << 20  # big enough that a kill often lands inside a write
PAYLOADS = (b"A" * SIZE, b"B" * SIZE)
KILLS = 8

# Writes the two payloads in turn to one path, reporting each write once it has returned.
WRITER = f"""
import sys
from rnner.files import write_bytes

payloads = (b"A" * {SIZE}, b"B" * {SIZE})
print("ready", flush=True)
i = 0
while True:
    write_bytes(sys.argv[1], payloads[i % 2])
    i += 1
    print(i, flush=True)
"""


def temporaries(folder: Path, target: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p != target)


def test_sigkill_never_leaves_a_torn_file(tmp_path: Path) -> None:
    rng = random.Random(20240611)
    target = tmp_path / "model.bin"
    completed_total = 0
    for kill in range(KILLS):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.0, 0.25))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        reported = proc.stdout.read().split()
        proc.stdout.close()
        done = int(reported[-1]) if reported else 0  # writes of this process that returned
        completed_total += done

        if not target.exists():
            assert completed_total == 0, f"kill {kill}: the file vanished"
            continue
        data = target.read_bytes()
        assert data in PAYLOADS, f"kill {kill}: torn file of {len(data)} bytes"
        if done:
            # The last write that returned, or the next one if the kill came after its rename.
            assert data in (PAYLOADS[(done - 1) % 2], PAYLOADS[done % 2])
        # A kill inside a write may leave that write's temporary file, and nothing else.
        left = temporaries(tmp_path, target)
        assert all(re.fullmatch(r"\.model\.bin\..+\.tmp", name) for name in left), left
        assert len(left) <= kill + 1
    assert completed_total > 0  # the kills did not all land before the first write


def test_body_exception_removes_temporary_and_keeps_target(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError, match="boom"), files.atomic_open(target) as f:
        f.write("partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []

    target.write_text("old\n", encoding="utf-8")
    for error in (ValueError, KeyboardInterrupt):  # Ctrl-C too
        with pytest.raises(error), files.atomic_open(target, "wb") as f:
            f.write(b"new\n" * 1000)
            raise error()
        assert target.read_text(encoding="utf-8") == "old\n"
        assert temporaries(tmp_path, target) == []


def test_success_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "dir" / "out.json"  # missing folders are made
    files.write_json(target, {"name": "Müller", "n": [1, 2]})
    assert json.loads(target.read_text(encoding="utf-8")) == {"name": "Müller", "n": [1, 2]}
    assert "Müller" in target.read_text(encoding="utf-8")  # not \u escaped
    files.write_text(target, "short\n")
    assert target.read_bytes() == b"short\n"
    files.write_bytes(target, b"\x00\xff")
    assert target.read_bytes() == b"\x00\xff"
    assert temporaries(target.parent, target) == []


def test_written_files_get_ordinary_permissions(tmp_path: Path) -> None:
    """A rename must not change what a plain open() would have created (umask applies)."""
    plain, atomic = tmp_path / "plain.txt", tmp_path / "atomic.txt"
    plain.write_text("x", encoding="utf-8")
    files.write_text(atomic, "x")
    assert oct(atomic.stat().st_mode & 0o777) == oct(plain.stat().st_mode & 0o777)


@pytest.mark.parametrize(
    ("write", "bad"),
    [
        (files.write_text, "new\n" * 10000 + "\ud800"),  # a lone surrogate: UTF-8 cannot encode it
        (files.write_json, {"text": "new\n" * 10000 + "\ud800"}),
        (files.write_bytes, "not bytes"),
    ],
    ids=["write_text", "write_json", "write_bytes"],
)
def test_a_write_that_fails_midway_leaves_the_old_file(tmp_path: Path, write, bad) -> None:
    """Every writer, not only write_bytes: a plain open() would have emptied the file."""
    target = tmp_path / "out"
    target.write_bytes(b"old\n")
    with pytest.raises((UnicodeEncodeError, TypeError)):
        write(target, bad)
    assert target.read_bytes() == b"old\n"
    assert temporaries(tmp_path, target) == []
