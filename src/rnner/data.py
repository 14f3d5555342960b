"""Locating and obtaining datasets, so commands run without a path argument and a wrong or
truncated download is caught before it silently changes results."""

from __future__ import annotations

import hashlib
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from rnner.conll import decode_bytes, parse_conll
from rnner.errors import (  # noqa: F401 (DataError and its kinds are re-exported)
    ChecksumError,
    DataError,
    DataNotFoundError,
    DownloadError,
    InputError,
)
from rnner.files import atomic_open, sha256

ENV_DATA = "RNNER_DATA"
_CHUNK = 1 << 16
_MAX_BYTES = 256 << 20  # a server sending more than this is not serving a CoNLL split
_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset's files are and must contain; the counts make a mismatch explainable."""

    files: Mapping[str, str]
    sha256: Mapping[str, str]
    sentences: Mapping[str, int]
    tokens: Mapping[str, int]
    documents: Mapping[str, int] = field(default_factory=dict)
    urls: tuple[str, ...] = ()  # base URLs; a file's URL is f"{base}/{file}"
    url_env: str = ""  # environment variable that overrides `urls`


DATASETS: dict[str, DatasetInfo] = {
    "conll2003": DatasetInfo(
        files={"train": "train.txt", "dev": "dev.txt", "test": "test.txt"},
        sha256={
            "train": "f83974d1808bb6699ff06d36f0236cf66fce5be1c2b6bd5111ff8f7e9fc71c8d",
            "dev": "98e27eee97edde022caaa568cc46232261ea6722a2132de70b1e1e7971690fdd",
            "test": "ed547d3462b247f041b067ee4ec7a3d0716b5341be1b972ff1bb2d5fb630ab46",
        },
        sentences={"train": 14041, "dev": 3250, "test": 3453},
        tokens={"train": 203621, "dev": 51362, "test": 46435},
        documents={"train": 946, "dev": 216, "test": 231},
        # No public mirror is known to serve byte-identical files (4 columns, IOB2 tags), and
        # a near-copy would fail verification; the user names a source with --url or the env.
        urls=(),
        url_env="RNNER_CONLL2003_URL",
    ),
}


def dataset_info(dataset: str) -> DatasetInfo:
    try:
        return DATASETS[dataset]
    except KeyError:
        known = ", ".join(sorted(DATASETS))
        raise DataError(f"unknown dataset {dataset!r}; known: {known}") from None


def _split_file(info: DatasetInfo, dataset: str, split: str) -> str:
    try:
        return info.files[split]
    except KeyError:
        known = ", ".join(info.files)
        raise DataError(f"{dataset} has no split {split!r}; known: {known}") from None


def _repo_root() -> Path | None:
    """The source checkout this module runs from, if any (an editable install)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rnner" / "data"


def default_download_dir() -> Path:
    """Where `rnner data download` puts data: $RNNER_DATA if set, else the user cache."""
    env = os.environ.get(ENV_DATA)
    return _data_root(Path(env).expanduser()) if env else cache_dir()


def _data_root(path: Path) -> Path:
    """A data root holds one folder per dataset; a dataset's own folder (`.../conll2003`,
    as people often set $RNNER_DATA) stands for its parent, so both forms find the files."""
    if path.name in DATASETS and not (path / path.name).is_dir():
        return path.parent
    return path


def candidate_dirs(explicit: str | os.PathLike[str] | None = None) -> list[Path]:
    """Data roots to search, in order; each holds one folder per dataset.

    An explicit directory is the only candidate: silently training on data from elsewhere
    would make a run irreproducible. An empty string (a config's default) means none.
    """
    if explicit:
        return [_data_root(Path(explicit).expanduser())]
    dirs = []
    if env := os.environ.get(ENV_DATA):
        dirs.append(_data_root(Path(env).expanduser()))
    dirs.append(Path.cwd().parent / "shared" / "data")
    if (root := _repo_root()) is not None:
        dirs.append(root.parent / "shared" / "data")
    dirs.append(cache_dir())
    unique: dict[Path, None] = {}
    for d in dirs:
        unique.setdefault(Path(os.path.abspath(d)), None)
    return list(unique)


def data_dir(
    explicit: str | os.PathLike[str] | None = None, dataset: str = "conll2003"
) -> Path | None:
    """The first candidate data root that holds every file of `dataset`, or None."""
    info = dataset_info(dataset)
    for root in candidate_dirs(explicit):
        if all((root / dataset / name).is_file() for name in info.files.values()):
            return root
    return None


def resolve_split(dataset: str, split: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The path of one split's file, or DataNotFoundError saying where it looked."""
    info = dataset_info(dataset)
    name = _split_file(info, dataset, split)
    dirs = candidate_dirs(data_dir)
    for root in dirs:
        path = root / dataset / name
        if path.is_file():
            return path
    looked = "\n".join(f"  {root / dataset / name}" for root in dirs)
    raise DataNotFoundError(
        f"{dataset} {split} split not found; looked in:\n{looked}\n"
        f"Run `rnner data download {dataset}`, set {ENV_DATA} to the folder that holds "
        f"{dataset}/, or pass --{split} PATH."
    )


def _describe(data: bytes, info: DatasetInfo, split: str) -> str:
    """Explain a hash mismatch by counts, which tell a truncated or re-tagged file apart."""
    try:
        sentences = list(parse_conll(decode_bytes(data).split("\n"), max_tokens=None))
    except InputError as e:
        return f"it is not a readable CoNLL file ({e})"
    tokens = sum(map(len, sentences))
    return (
        f"it holds {len(sentences)} sentences and {tokens} tokens, "
        f"expected {info.sentences[split]} and {info.tokens[split]}"
    )


def verify(path: str | os.PathLike[str], dataset: str, split: str) -> None:
    """Raise ChecksumError unless `path` is byte-identical to the published split."""
    info = dataset_info(dataset)
    _split_file(info, dataset, split)
    path = Path(path)
    got = sha256(path)
    expected = info.sha256[split]
    if got != expected:
        raise ChecksumError(
            f"{path}: SHA-256 {got} differs from the expected {expected}; "
            + _describe(path.read_bytes(), info, split)
        )


def _base_urls(info: DatasetInfo, dataset: str, base_url: str | None) -> list[str]:
    if base_url:
        return [base_url]
    if info.url_env and (env := os.environ.get(info.url_env)):
        return [env]
    if info.urls:
        return list(info.urls)
    hint = f" or set {info.url_env}" if info.url_env else ""
    raise DownloadError(
        f"no download URL is known for {dataset}; pass --url BASE{hint}, where BASE serves "
        + ", ".join(info.files.values())
    )


def _fetch(url: str, dest: Path, info: DatasetInfo, split: str, progress: bool) -> None:
    """Download `url` to `dest`, which appears only once its SHA-256 matches."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https", "file"):
        raise DownloadError(f"{url}: unsupported URL scheme {scheme!r}")
    request = urllib.request.Request(url, headers={"User-Agent": "rnner"})
    try:
        response = urllib.request.urlopen(request, timeout=_TIMEOUT_S)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"{url}: cannot download ({reason})") from None
    length = response.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    with (
        response,
        atomic_open(dest, "w+b") as f,
        tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=dest.name,
            disable=not progress or not sys.stderr.isatty(),  # no bar frames in a log file
            leave=False,
        ) as bar,
    ):
        digest = hashlib.sha256()
        size = 0
        try:
            while chunk := response.read(_CHUNK):
                size += len(chunk)
                if size > _MAX_BYTES:
                    raise DownloadError(f"{url}: more than {_MAX_BYTES >> 20} MiB; wrong URL?")
                digest.update(chunk)
                f.write(chunk)
                bar.update(len(chunk))
        except (urllib.error.URLError, OSError) as e:
            raise DownloadError(f"{url}: download interrupted ({e})") from None
        got = digest.hexdigest()
        if got != info.sha256[split]:
            f.seek(0)
            raise ChecksumError(
                f"{url}: SHA-256 {got} differs from the expected {info.sha256[split]}; "
                + _describe(f.read(), info, split)
            )


def download(
    dataset: str,
    dest_dir: str | os.PathLike[str],
    base_url: str | None = None,
    progress: bool = True,
) -> Path:
    """Fetch every split of `dataset` into `dest_dir/<dataset>/` and return that folder.

    Files already there and verified are kept. Each file is written to a temporary name and
    renamed only after its hash matches, so a failure leaves no partial or wrong file behind.
    """
    info = dataset_info(dataset)
    bases = _base_urls(info, dataset, base_url)
    folder = Path(dest_dir).expanduser() / dataset
    for split, name in info.files.items():
        dest = folder / name
        if dest.is_file() and sha256(dest) == info.sha256[split]:
            continue
        errors = []
        for base in bases:
            try:
                _fetch(f"{base.rstrip('/')}/{name}", dest, info, split, progress)
                break
            except DataError as e:
                errors.append(str(e))
        else:
            raise DownloadError("\n".join([f"could not obtain {dataset} {name}:", *errors]))
    return folder
