"""Shared fixtures: where the data is, tiny configs, and one tiny trained run for the session.

Everything here is sized for a busy 2-core machine: the shared run trains a few hundred
sentences with 16-32 dimensional layers on one CPU thread, in a few seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).parent
GOOD = TESTS / "data" / "good" / "small.txt"
BAD = TESTS / "data" / "bad"


def _conll_folder() -> Path:
    """Where the library itself finds CoNLL-2003 (`$RNNER_DATA`, as the folder above
    `conll2003/` or that folder itself, then `../shared/data`, ...): tests and library agree."""
    from rnner.data import candidate_dirs, data_dir

    root = data_dir() or candidate_dirs()[0]
    return root / "conll2003"


CONLL = _conll_folder()
DATA_ROOT = CONLL.parent

# A model small enough to train in about a second on one thread; random word vectors.
TINY: dict[str, dict[str, Any]] = {
    "data": {"scheme": "BIOES"},
    "model": {
        "embeddings": "random",
        "word_dim": 16,
        "casing_dim": 4,
        "char_encoder": "cnn",
        "char_dim": 8,
        "char_hidden": 8,
        "hidden_size": 16,
        "dropout": 0.0,
    },
    "train": {
        "optimizer": "adam",
        "lr": 0.01,
        "schedule": "constant",
        "batch_size": 10,
        "eval_batch_size": 64,
        "epochs": 2,
        "patience": 0,
        "threads": 1,
        "device": "cpu",
    },
}

# The session run: enough training that it finds entities in sentences it has seen.
SESSION_SENTENCES = 300
SESSION_EPOCHS = 6
SESSION_SETS = [
    f"data.max_sentences={SESSION_SENTENCES}",
    f"train.epochs={SESSION_EPOCHS}",
    "train.lr=0.02",
    "model.hidden_size=32",
]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    raise TypeError(f"no TOML for {value!r}")


def to_toml(sections: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {toml_value(v)}" for key, v in values.items()]
        lines.append("")
    return "\n".join(lines)


def tiny_sections(**overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """TINY with `section={key: value}` overrides merged in."""
    merged = {name: dict(values) for name, values in TINY.items()}
    for name, values in overrides.items():
        merged.setdefault(name, {}).update(values)
    return merged


ConfigWriter = Callable[..., Path]


@pytest.fixture
def write_config(tmp_path: Path) -> ConfigWriter:
    """`write_config(name="tiny.toml", data={...}, model={...}, train={...})` -> path."""

    def write(name: str = "tiny.toml", **overrides: dict[str, Any]) -> Path:
        path = tmp_path / name
        path.write_text(to_toml(tiny_sections(**overrides)), encoding="utf-8")
        return path

    return write


def conll_available() -> bool:
    return all((CONLL / f"{split}.txt").is_file() for split in ("train", "dev", "test"))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


MISSING = f"CoNLL-2003 not found in {CONLL} (set RNNER_DATA)"


def pytest_sessionstart(session: pytest.Session) -> None:
    """In CI a missing corpus fails the run: skipping the tests that need it would report
    success for a suite that tested a fraction of what it should."""
    if in_ci() and not conll_available():
        pytest.exit(f"CI=true and {MISSING}", returncode=1)


def needs_conll() -> None:
    """Skip the calling test (fail it in CI) when the corpus is missing."""
    if not conll_available():
        if in_ci():
            pytest.fail(f"CI=true and {MISSING}")
        pytest.skip(MISSING)


@pytest.fixture(scope="session")
def conll_dir() -> Path:
    needs_conll()
    return CONLL


@pytest.fixture(scope="session")
def tiny_run(conll_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory trained once through the CLI; tests must not modify it (copy it)."""
    from rnner.cli import main

    root = tmp_path_factory.mktemp("session_run")
    config = root / "tiny.toml"
    config.write_text(
        to_toml(tiny_sections(data={"data_dir": str(conll_dir.parent)})), encoding="utf-8"
    )
    run = root / "run"
    argv = ["train", str(config), "--output", str(run), "--quiet"]
    for item in SESSION_SETS:
        argv += ["--set", item]
    assert main(argv) == 0
    return run


@pytest.fixture
def run_copy(tiny_run: Path, tmp_path: Path) -> Path:
    """A private copy of the session run that a test may break."""
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    """Running or sleeping; a zombie (exited, not yet reaped by init) counts as gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_gone(pids: list[int], seconds: float) -> None:
    """Fail unless every process in `pids` has exited within `seconds` (then kill it)."""
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            for p in pids:
                if alive(p):
                    os.kill(p, signal.SIGKILL)
            pytest.fail(f"process {[p for p in pids if alive(p)]} outlived its parent")
        time.sleep(0.2)


def default_sigint() -> None:
    """For Popen's preexec_fn: SIGINT back to its default in the child. A shell starts
    background jobs with SIGINT ignored, and Python then installs no KeyboardInterrupt
    handler in the children, so a suite run in the background would test nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def sigint_alone(parent: subprocess.Popen, workers: list[int]) -> tuple[int, str]:
    """SIGINT to `parent` only, as `kill -INT` sends it (Ctrl-C signals the whole group): its
    exit status and last line of stderr, once it and its `workers` are gone."""
    try:
        parent.send_signal(signal.SIGINT)
        _, err = parent.communicate(timeout=60)
    finally:
        if parent.poll() is None:
            parent.kill()
        wait_gone(workers, 60)
    return parent.returncode, err.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def postgres() -> Any:
    """A throwaway PostgreSQL server (see pgserver.py). Outside CI a missing PostgreSQL skips
    the tests that need it; under CI=true it fails them, so CI cannot pass without them."""
    from pgserver import PostgresServer, unavailable

    why = unavailable()
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI needs PostgreSQL for these tests: {why}")
        pytest.skip(why)
    server = PostgresServer()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.close()


def checkpoint_progress(run: Path) -> dict[str, Any]:
    """The counters saved in a run's checkpoint, read from the file's JSON header (no torch).

    `position` is the number of batches of `epoch` already done: the end-of-epoch checkpoint
    saves 0 (with the next epoch), the one the signal handler writes saves where it stopped.
    """
    from safetensors import safe_open

    with safe_open(str(run / "checkpoint.safetensors"), framework="numpy") as f:
        state = json.loads(f.metadata()["state"])
    top = dict(state["__dict__"])
    return {k: v for k, v in top["progress"]["__dict__"] if not isinstance(v, dict | list)}


def stopped_by_signal(run: Path) -> bool:
    """The run's checkpoint was written mid-epoch, which only the signal handler does."""
    return checkpoint_progress(run)["position"] > 0


def wait_for(
    predicate: Callable[[], bool], process: subprocess.Popen, seconds: float, what: str
) -> None:
    """Poll `predicate` until it holds; fail (killing `process`) on timeout or early exit."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"{what}: not seen (exit {process.returncode}): {err[-2000:]}")
        time.sleep(0.05)
