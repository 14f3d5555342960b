"""What a run records to be reproduced: the resolved config, library versions, the code's git
commit, a hash of every data file and the seed."""

from __future__ import annotations

import hashlib
import json
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy
import pytest
import torch
from conftest import SESSION_EPOCHS, SESSION_SENTENCES, TINY

import rnner
from rnner import provenance
from rnner.config import Config

COMMIT = re.compile(r"[0-9a-f]{40}(-dirty)?")


def load(run: Path, name: str) -> dict[str, Any]:
    return json.loads((run / name).read_text(encoding="utf-8"))


def test_run_records_seed_and_versions(tiny_run: Path) -> None:
    run, config = load(tiny_run, "run.json"), load(tiny_run, "config.json")
    assert isinstance(run["seed"], int) and run["seed"] == config["train"]["seed"]
    versions = run["versions"]
    assert versions["rnner"] == rnner.__version__
    assert versions["torch"] == torch.__version__
    assert versions["numpy"] == numpy.__version__
    assert versions["python"] == platform.python_version()


def test_run_records_a_real_commit(tiny_run: Path) -> None:
    commit = load(tiny_run, "run.json")["git_commit"]
    assert commit is None or COMMIT.fullmatch(commit), commit
    if commit is not None:  # from a checkout: the commit exists there (HEAD may have moved on)
        source = Path(provenance.__file__).parent
        sha = commit.removesuffix("-dirty")
        found = subprocess.run(
            ["git", "-C", str(source), "cat-file", "-e", f"{sha}^{{commit}}"], capture_output=True
        )
        assert found.returncode == 0, found.stderr


def test_run_records_data_hashes(tiny_run: Path, conll_dir: Path) -> None:
    data = load(tiny_run, "run.json")["data"]
    assert set(data) == {"train", "dev", "test"}
    for split, entry in data.items():
        # The path the default data directory resolved to, not the empty config value.
        assert Path(entry["path"]) == conll_dir / f"{split}.txt"
        digest = hashlib.sha256(Path(entry["path"]).read_bytes()).hexdigest()
        assert entry["sha256"] == digest


def test_config_json_is_the_resolved_config(tiny_run: Path, conll_dir: Path) -> None:
    saved = load(tiny_run, "config.json")
    assert Config.from_dict(saved).to_dict() == saved  # loads back to itself
    # Every key, defaults included, so that a later change of a default changes nothing.
    defaults = Config().to_dict()
    assert {s: set(v) for s, v in saved.items()} == {s: set(v) for s, v in defaults.items()}
    # The TOML values and the --set overrides, applied.
    assert saved["model"] == {**defaults["model"], **TINY["model"], "hidden_size": 32}
    assert saved["data"]["max_sentences"] == SESSION_SENTENCES
    assert saved["data"]["data_dir"] == str(conll_dir.parent)
    assert saved["train"]["epochs"] == SESSION_EPOCHS
    assert saved["train"]["lr"] == 0.02


def test_describe_hashes_each_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_bytes(b"EU B-ORG\n")
    b.write_bytes(b"x" * (3 << 20))  # more than one read block
    info = provenance.describe({"train": str(a), "dev": str(b)}, seed=7)
    assert info["seed"] == 7
    assert info["data"] == {
        "train": {"path": str(a), "sha256": hashlib.sha256(a.read_bytes()).hexdigest()},
        "dev": {"path": str(b), "sha256": hashlib.sha256(b.read_bytes()).hexdigest()},
    }


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def test_git_commit_clean_dirty_and_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commit of the tree holding the code; `-dirty` after edits to tracked files (new
    untracked files do not count); None outside a checkout or without git."""
    repo = tmp_path / "repo"
    (repo / "pkg").mkdir(parents=True)
    code = repo / "pkg" / "provenance.py"
    code.write_text("# code\n", encoding="utf-8")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    monkeypatch.setattr(provenance, "__file__", str(code))
    head = git(repo, "rev-parse", "HEAD")
    assert provenance.git_commit() == head
    (repo / "pkg" / "notes.txt").write_text("untracked\n", encoding="utf-8")
    assert provenance.git_commit() == head
    code.write_text("# edited\n", encoding="utf-8")
    assert provenance.git_commit() == f"{head}-dirty"

    elsewhere = tmp_path / "not_a_repo" / "provenance.py"
    elsewhere.parent.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # do not find a repo above
    monkeypatch.setattr(provenance, "__file__", str(elsewhere))
    assert provenance.git_commit() is None

    monkeypatch.setattr(provenance, "__file__", str(code))
    monkeypatch.setenv("PATH", str(tmp_path / "no_bin"))  # no git program at all
    assert provenance.git_commit() is None
