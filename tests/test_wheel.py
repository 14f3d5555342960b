"""The wheel carries the shipped model and configs: built from the repository, installed into
a fresh virtual environment and run from a directory outside any checkout, `rnner predict`
tags with the shipped model and `rnner train conll03` trains a shipped config by name.

The fresh venv reaches the test environment's packages (torch, numpy, ...) through a .pth
file, so nothing is downloaded or reinstalled; rnner itself comes only from the wheel (the
test environment's own editable rnner is not on that path, and PYTHONPATH is cleared).
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# what a build reads: the repository's tracked sources, never runs/ or a venv
BUILD_INPUTS = (
    "pyproject.toml",
    "setup.py",
    "MANIFEST.in",
    "README.md",
    "src",
    "models",
    "configs",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("source")
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        elif (ROOT / name).is_file():
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    try:  # build with the setuptools at hand when there is one (no download)
        import setuptools  # noqa: F401

        isolation = ["--no-build-isolation"]
    except ImportError:
        isolation = []
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            *isolation,
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
    )
    (built,) = out.glob("rnner-*.whl")
    return built


def test_wheel_holds_model_configs_and_page(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "rnner/models/conll03-en/router.json" in names  # two models routed by case
    for route in ("cased", "caseless"):
        for f in ("model.safetensors", "config.json", "vocab.json", "run.json", "metrics.json"):
            assert f"rnner/models/conll03-en/{route}/{f}" in names
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").rglob("*.toml")}
    assert shipped and {f"rnner/{p}" for p in shipped} <= names
    assert "rnner/serve/static/index.html" in names
    assert not any(n.startswith(("runs/", "tests/", "models/", "configs/")) for n in names)


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    purelib = Path(sysconfig.get_path("purelib", vars={"base": str(root), "platbase": str(root)}))
    # the test environment's packages (torch...), after the venv's own site-packages
    paths = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (purelib / "_test_env.pth").write_text("\n".join(paths) + "\n", encoding="utf-8")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(root / "bin" / "python"),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        check=True,
    )
    return root


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RNNER_MODEL", "VIRTUAL_ENV")
    }
    return {**env, **extra}


def run(
    venv: Path, cwd: Path, *args: str, stdin: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "rnner"), *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=clean_env(**env),
        timeout=900,
    )


def test_installed_rnner_comes_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import rnner, rnner.predict as p; print(rnner.__file__); "
            "print(p.default_model_path())",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=clean_env(),
        check=True,
    ).stdout.split()
    assert out[0].startswith(str(venv)), out
    assert out[1].startswith(str(venv)) and out[1].endswith("rnner/models/conll03-en"), out


def test_predict_with_the_shipped_model_outside_a_checkout(venv: Path, tmp_path: Path) -> None:
    r = run(
        venv,
        tmp_path,
        "predict",
        "--quiet",
        stdin="Peter Blackburn of the European Commission visited Brussels on Monday.\n",
    )
    assert r.returncode == 0, r.stderr
    spans = json.loads(r.stdout)["spans"]
    assert [(s["text"], s["label"]) for s in spans] == [
        ("Peter Blackburn", "PER"),
        ("European Commission", "ORG"),
        ("Brussels", "LOC"),
    ]


def test_train_a_shipped_config_by_name(venv: Path, tmp_path: Path, conll_dir: Path) -> None:
    r = run(
        venv,
        tmp_path,
        "train",
        "conll03",
        "--output",
        "runs/x",
        "--quiet",
        "--set",
        "data.max_sentences=40",
        "--set",
        "train.epochs=1",
        "--set",
        "train.threads=1",
        "--set",
        "model.hidden_size=16",
        RNNER_DATA=str(conll_dir.parent),
    )
    assert r.returncode == 0, r.stderr
    run_dir = tmp_path / "runs" / "x"
    cfg = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    assert cfg["model"]["embeddings"] == "glove-6b-50d"  # configs/conll03.toml's own values
    assert cfg["model"]["hidden_size"] == 16
    assert (run_dir / "model.safetensors").is_file()
    missing = run(venv, tmp_path, "train", "no-such-config")
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "config no-such-config: no such file, nor a shipped config "
        "of that name (shipped: conll03, conll03-accurate, seed)"
    )
