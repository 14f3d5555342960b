import functools
import hashlib
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CONLL, DATA_ROOT, conll_available

from rnner import data
from rnner.data import (
    DATASETS,
    ChecksumError,
    DataError,
    DataNotFoundError,
    DatasetInfo,
    DownloadError,
    data_dir,
    download,
    resolve_split,
    verify,
)
from rnner.files import write_text

SHARED = DATA_ROOT
REAL = CONLL
needs_real = pytest.mark.skipif(not conll_available(), reason="CoNLL-2003 data not available")

TINY_FILES = {
    "train": "-DOCSTART- -X- -X- O\n\nEU NNP I-NP B-ORG\nrejects VBZ I-VP O\n\n",
    "dev": "Peter NNP I-NP B-PER\nBlackburn NNP I-NP I-PER\n\n",
}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No default location holds data: the search sees only what a test puts there."""
    monkeypatch.delenv("RNNER_DATA", raising=False)
    monkeypatch.delenv("RNNER_CONLL2003_URL", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_repo_root", lambda: None)
    work = tmp_path / "work" / "repo"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    return tmp_path


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> DatasetInfo:
    info = DatasetInfo(
        files={split: f"{split}.txt" for split in TINY_FILES},
        sha256={split: _sha(text) for split, text in TINY_FILES.items()},
        sentences={"train": 1, "dev": 1},
        tokens={"train": 2, "dev": 2},
        url_env="RNNER_TINY_URL",
    )
    monkeypatch.setitem(DATASETS, "tiny", info)
    monkeypatch.delenv("RNNER_TINY_URL", raising=False)
    return info


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A local HTTP server; yields its base URL and the folder it serves."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _serve_tiny(root: Path, **overrides: str) -> None:
    for split, text in {**TINY_FILES, **overrides}.items():
        write_text(root / f"{split}.txt", text)


def test_conll2003_info_is_consistent() -> None:
    info = DATASETS["conll2003"]
    assert set(info.files) == set(info.sha256) == set(info.sentences) == set(info.tokens)
    assert info.sentences["train"] == 14041 and info.tokens["train"] == 203621


def test_data_dir_search(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert data_dir() is None
    root = isolated / "somewhere"
    for name in ("train.txt", "dev.txt", "test.txt"):
        write_text(root / "conll2003" / name, "a O\n")
    assert data_dir(root) == root
    assert data_dir(isolated / "other") is None  # an explicit folder is the only candidate
    monkeypatch.setenv("RNNER_DATA", str(root))
    assert data_dir() == root
    assert data_dir("") == root  # an empty config value means "search"
    monkeypatch.delenv("RNNER_DATA")
    shared = isolated / "work" / "shared" / "data"
    shutil.copytree(root, shared)
    assert data_dir() == shared  # ../shared/data relative to the working directory


def test_resolve_split_not_found(isolated: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        resolve_split("conll2003", "train")
    message = str(info.value)
    assert "rnner data download conll2003" in message
    assert "RNNER_DATA" in message and "--train" in message
    assert str(isolated / "cache" / "rnner" / "data" / "conll2003" / "train.txt") in message
    with pytest.raises(DataError, match="no split 'valid'"):
        resolve_split("conll2003", "valid")
    with pytest.raises(DataError, match="unknown dataset"):
        resolve_split("conll2012", "train")


@needs_real
def test_resolve_split_real(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RNNER_DATA", str(SHARED))
    assert resolve_split("conll2003", "dev") == REAL / "dev.txt"
    assert resolve_split("conll2003", "test", SHARED) == REAL / "test.txt"


@needs_real
def test_verify_real_files() -> None:
    for split in ("train", "dev", "test"):
        verify(REAL / f"{split}.txt", "conll2003", split)


@needs_real
def test_verify_reports_counts(tmp_path: Path) -> None:
    lines = (REAL / "dev.txt").read_text().split("\n")
    path = tmp_path / "dev.txt"
    write_text(path, "\n".join(lines[:-100]))
    with pytest.raises(ChecksumError, match=r"expected 3250 and 51362"):
        verify(path, "conll2003", "dev")


def test_download_tiny(tiny: DatasetInfo, server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    _serve_tiny(root)
    folder = download("tiny", tmp_path / "dest", base_url=url + "/", progress=False)
    assert folder == tmp_path / "dest" / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == ["dev.txt", "train.txt"]
    assert (folder / "dev.txt").read_text() == TINY_FILES["dev"]
    verify(folder / "train.txt", "tiny", "train")


def test_download_url_from_env(
    tiny: DatasetInfo, server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = server
    _serve_tiny(root)
    monkeypatch.setenv("RNNER_TINY_URL", url)
    folder = download("tiny", tmp_path / "dest", progress=False)
    assert (folder / "train.txt").read_text() == TINY_FILES["train"]


def test_download_without_url(tiny: DatasetInfo, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="--url BASE or set RNNER_TINY_URL"):
        download("tiny", tmp_path, progress=False)


def test_download_corrupted(tiny: DatasetInfo, server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    _serve_tiny(root, train=TINY_FILES["train"] + "Peter NNP I-NP B-PER\n\n")
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError) as info:
        download("tiny", dest, base_url=url, progress=False)
    message = str(info.value)
    assert "SHA-256" in message and f"{url}/train.txt" in message
    assert "it holds 2 sentences and 3 tokens, expected 1 and 2" in message
    assert [p for p in dest.rglob("*") if p.is_file()] == []


def test_download_404(tiny: DatasetInfo, server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    write_text(root / "train.txt", TINY_FILES["train"])  # dev.txt is missing
    dest = tmp_path / "dest"
    with pytest.raises(DownloadError, match=r"dev\.txt: HTTP 404"):
        download("tiny", dest, base_url=url, progress=False)
    # the verified file stays; nothing of the failed one, not even a temporary file
    assert [p.name for p in (dest / "tiny").iterdir()] == ["train.txt"]


def test_download_tries_next_mirror(
    tiny: DatasetInfo, server: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, root = server
    (root / "good").mkdir()
    _serve_tiny(root / "good")
    monkeypatch.setitem(
        DATASETS, "tiny", DatasetInfo(**{**tiny.__dict__, "urls": (url + "/gone", url + "/good")})
    )
    folder = download("tiny", tmp_path / "dest", progress=False)
    assert (folder / "dev.txt").read_text() == TINY_FILES["dev"]


@needs_real
def test_download_real(server: tuple[str, Path], tmp_path: Path) -> None:
    url, root = server
    for name in ("train.txt", "dev.txt", "test.txt"):
        shutil.copyfile(REAL / name, root / name)
    folder = download("conll2003", tmp_path / "dest", base_url=url, progress=True)
    for name in ("train.txt", "dev.txt", "test.txt"):
        assert (folder / name).read_bytes() == (REAL / name).read_bytes()
    assert data_dir(tmp_path / "dest") == tmp_path / "dest"
