"""Distillation (`train.teachers`, `rnner distill`): soft targets for the training sentences,
the mean of the teachers' tag marginals (forward-backward over each teacher's CRF).

The targets are computed once per set of teachers and training text, and cached as
safetensors under a key made of the teachers' files (weights, config, vocabularies, lexicon)
and the training text; every epoch, every later seed and a resumed run read the cache.
Teachers are refused, by run directory, when their tag set or scheme is not the student's or
when they were trained on dev or test (`data.train_on_dev`, or a training file that is the
student's dev or test file by path or content): their marginals would carry the held-out
labels into training.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from .. import data, files
from ..config import Config
from ..conll import Sentence
from ..errors import RnnerError, RunDirError
from ..lexicon import FILE as LEXICON_FILE
from ..pipeline import Corpus, encode_split, sentence_marginals
from ..runs import load_run
from ..vocab import Vocabs

TEACHER_FILES = ("model.safetensors", "config.json", "vocab.json", LEXICON_FILE)
CACHE_FORMAT = 1


def default_cache() -> Path:
    return data.cache_dir().parent / "distill"


def soft_targets(
    cfg: Config, corpus: Corpus, vocabs: Vocabs, device: torch.device
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Per training sentence, the teachers' mean tag marginals [length, tags] in the
    student's tag order; and what run.json records of them (teachers, cache, whether the
    cache was filled now). The global random generators are left as they were, so a
    distilled run draws what a plain one does."""
    names = vocabs.tags.itos
    runs = [Path(t) for t in cfg.train.teachers]
    for run in runs:
        check_teacher(run, cfg, corpus, names)
    hashes = sorted((teacher_hash(run), str(run)) for run in runs)
    key = cache_key([h for h, _ in hashes], corpus.train, names)
    path = Path(cfg.train.distill_cache or default_cache()) / f"{key}.safetensors"
    rows = read_cache(path, corpus.train)
    computed = rows is None
    if rows is None:
        with torch.random.fork_rng(devices=[]):  # loading a teacher initializes modules
            rows = mean_marginals([Path(r) for _, r in hashes], corpus.train, cfg, device)
        write_cache(path, rows, [r for _, r in hashes], names)
    facts = {
        "teachers": [str(r) for r in runs],
        "weight": cfg.train.distill_weight,
        "cache": str(path),
        "computed": computed,
    }
    return rows, facts


def _read_json(run: Path, name: str) -> Any:
    try:
        return json.loads((run / name).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunDirError(f"{run}: not a run directory (missing {name})") from None
    except (OSError, ValueError) as e:
        raise RunDirError(f"{run}: damaged run directory ({name}: {e})") from None


def check_teacher(run: Path, cfg: Config, corpus: Corpus, names: Sequence[str]) -> None:
    """Refuse a teacher, naming its run directory, that cannot teach this student."""
    if not run.is_dir():
        raise RunDirError(f"{run}: not a run directory (no such directory)")
    try:
        tcfg = Config.from_dict(_read_json(run, "config.json"))
    except RnnerError as e:
        raise RunDirError(f"{run}: damaged run directory ({e})") from None
    tags = _read_json(run, "vocab.json").get("tags", {}).get("items", [])
    meta = _read_json(run, "run.json")
    if tcfg.data.scheme != cfg.data.scheme:
        raise RunDirError(
            f"{run}: the teacher tags in {tcfg.data.scheme}, the student in "
            f"{cfg.data.scheme}; a teacher must share the student's tag scheme"
        )
    if list(tags) != list(names):
        only_t = sorted(set(tags) - set(names)) or "-"
        only_s = sorted(set(names) - set(tags)) or "-"
        raise RunDirError(
            f"{run}: the teacher's tag set is not the student's (teacher only: {only_t}; "
            f"student only: {only_s})"
        )
    if tcfg.data.train_on_dev:
        raise RunDirError(
            f"{run}: the teacher was trained on dev (data.train_on_dev = true); teachers must "
            "be trained on train only"
        )
    trained = meta.get("data", {}).get("train")
    if not trained:
        raise RunDirError(f"{run}: run.json does not say what the teacher was trained on")
    for split in ("dev", "test"):
        held = corpus.paths.get(split)
        if held and _same_file(trained, held):
            raise RunDirError(
                f"{run}: the teacher was trained on {trained['path']}, the student's {split} "
                "file; teachers must be trained on train only"
            )


def _same_file(trained: dict[str, str], held: str) -> bool:
    """A teacher's training file (run.json's path and hash) is `held`, by path or content."""
    if Path(trained.get("path", "")).resolve() == Path(held).resolve():
        return True
    return Path(held).is_file() and trained.get("sha256") == files.sha256(held)


def teacher_hash(run: Path) -> str:
    """The hash of what a teacher's marginals depend on: its weights, config, vocabularies
    and lexicon."""
    h = hashlib.sha256()
    for name in TEACHER_FILES:
        if (run / name).is_file():
            h.update(f"{name}:{files.sha256(run / name)}\n".encode())
    return h.hexdigest()


def cache_key(teachers: Sequence[str], sents: Sequence[Sentence], names: Sequence[str]) -> str:
    """The teachers' hashes, the training text (documents and tokens) and the tag names."""
    h = hashlib.sha256(json.dumps([CACHE_FORMAT, list(teachers), list(names)]).encode())
    for s in sents:
        h.update(f"{s.doc_id}\t{chr(31).join(s.tokens)}\n".encode())
    return h.hexdigest()[:40]


def mean_marginals(
    runs: Sequence[Path], sents: Sequence[Sentence], cfg: Config, device: torch.device
) -> list[np.ndarray]:
    """Each teacher tags the sentences as its own config reads them (context, lexicon);
    their marginals are averaged, sentence by sentence."""
    total: list[np.ndarray] | None = None
    for run in runs:
        model, vocabs, tcfg, _ = load_run(run, str(device))
        split = encode_split(sents, vocabs, tcfg)
        marg = sentence_marginals(model, split, split.batches(cfg.train.eval_batch_size), device)
        total = marg if total is None else [a + b for a, b in zip(total, marg, strict=True)]
        del model
    assert total is not None
    return [(m / len(runs)).astype(np.float32) for m in total]


def read_cache(path: Path, sents: Sequence[Sentence]) -> list[np.ndarray] | None:
    """The cached rows, or None when there is no cache or it does not fit the sentences."""
    if not path.is_file():
        return None
    try:
        stored = load_safetensors(path.read_bytes())
    except Exception:  # a torn or foreign file: computed again and replaced
        return None
    lengths = stored.get("lengths")
    if lengths is None or lengths.tolist() != [len(s) for s in sents]:
        return None
    cuts = np.cumsum(lengths)[:-1]
    return list(np.split(stored["marginals"], cuts))


def write_cache(
    path: Path, rows: Sequence[np.ndarray], teachers: Sequence[str], names: Sequence[str]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, np.ndarray] = {
        "marginals": np.concatenate(rows).astype(np.float32),
        "lengths": np.array([len(r) for r in rows], dtype=np.int64),
    }
    meta = {"teachers": json.dumps(list(teachers)), "tags": json.dumps(list(names))}
    files.write_bytes(path, save_safetensors(tensors, metadata=meta))
