"""What a run records so that it can be reproduced: versions, code commit, data hashes."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from .files import sha256


def git_commit() -> str | None:
    """The commit of the rnner source tree, when it runs from a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
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


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB."""
    import resource  # Unix only; imported here so that importing provenance works anywhere

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes there, KiB here
