"""What a run records so that it can be reproduced: versions, code commit, data hashes."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from pathlib import Path
from typing import Any


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def git_commit() -> str | None:
    """The commit of the rnner source tree, when it runs from a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out + ("-dirty" if dirty else "")


def versions() -> dict[str, str]:
    import numpy
    import torch

    from . import __version__

    return {
        "rnner": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }


def describe(paths: dict[str, str], seed: int) -> dict[str, Any]:
    return {
        "seed": seed,
        "versions": versions(),
        "git_commit": git_commit(),
        "data": {split: {"path": p, "sha256": sha256(p)} for split, p in paths.items()},
    }
