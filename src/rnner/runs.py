"""The run directory: the one format a trained model is saved in and loaded from.

A run directory holds everything needed to reload, evaluate and reproduce a model:
`model.safetensors` (weights), `config.json` (the resolved config), `vocab.json`, `run.json`
(provenance: versions, data hashes, schemes), `metrics.json` (best epoch, dev/test scores),
`log.jsonl` (one line per epoch), `lexicon.jsonl` when the model reads lexicon features, and,
while training can resume, `checkpoint.safetensors`.
Every file is written atomically, and loading never unpickles anything.

A routed model directory holds two exported run directories, `cased/` and `caseless/`, and
`router.json`, which says so; `rnner.predict.Tagger` reads each document with one of them,
by the rule of `rnner.routing`.

The shipped model's location is decided in one place, `default_model_path`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from . import files, lexicon, routing, tags
from .config import Config
from .errors import RunDirError
from .model import RNNTagger
from .vocab import Vocabs

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")
DEFAULT_MODEL = "models/conll03-en"  # the shipped model, relative to a checkout's root
ENV_MODEL = "RNNER_MODEL"  # overrides it
ROUTER_FILE = "router.json"
ROUTER_FORMAT = "rnner-case-router"


def save_run(
    out: Path,
    model: RNNTagger,
    vocabs: Vocabs,
    cfg: Config,
    meta: dict[str, Any] | None,
    half: bool = False,
) -> None:
    """Weights to safetensors; with `meta`, also config, vocabularies and provenance (JSON)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    files.write_bytes(out / "model.safetensors", save_safetensors(state))
    if meta is not None:
        files.write_json(out / "config.json", cfg.to_dict())
        files.write_json(out / "vocab.json", vocabs.to_dict())
        if vocabs.lexicon is not None:  # the model's own copy: the run stays self-contained
            files.write_text(out / lexicon.FILE, vocabs.lexicon.to_text())
        files.write_json(out / "run.json", {"word_dim": model.words.embedding_dim, **meta})


def load_weights(path: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    state = load_safetensors((Path(path) / "model.safetensors").read_bytes())
    return {
        k: v.float().to(device) if v.is_floating_point() else v.to(device) for k, v in state.items()
    }


def load_run(path: str | Path, device: str = "cpu") -> tuple[RNNTagger, Vocabs, Config, dict]:
    """Load a run directory without unpickling anything."""
    d = Path(path)
    if not d.is_dir():
        raise RunDirError(f"{d}: not a run directory (no such directory)")
    if (d / ROUTER_FILE).is_file():
        raise RunDirError(
            f"{d}: a routed model (two models, {ROUTER_FILE}), not one run directory: name one "
            f"of them ({d / routing.CASED}, {d / routing.CASELESS})"
        )
    pickles = sorted(p.name for p in d.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise RunDirError(
            f"{d}: refusing to load a run directory holding pickle files ({', '.join(pickles)}):"
            " unpickling can run arbitrary code; rnner models are model.safetensors plus JSON"
        )
    for name in ("model.safetensors", "config.json", "vocab.json", "run.json"):
        if not (d / name).is_file():
            raise RunDirError(f"{d}: not a run directory (missing {name})")
    try:
        cfg = Config.from_dict(_read_json(d / "config.json"))
        vocabs = Vocabs.from_dict(_read_json(d / "vocab.json"))
        if cfg.model.lexicon:
            if not (d / lexicon.FILE).is_file():
                raise RunDirError(f"{d}: not a run directory (missing {lexicon.FILE})")
            vocabs.lexicon = lexicon.Lexicon.load(d / lexicon.FILE, cfg.model.lexicon_lowercase)
        meta = _read_json(d / "run.json")
        names = vocabs.tags.itos
        model = RNNTagger(
            cfg.model,
            len(vocabs.words),
            len(vocabs.chars),
            len(names),
            meta["word_dim"],
            tags.constraints(names, cfg.data.scheme),
            len(vocabs.lexicon.types) if vocabs.lexicon is not None else 0,
        )
        model.load_state_dict(load_weights(d))
    except RunDirError:
        raise
    except Exception as e:  # bad JSON, config, truncated weights, shape mismatch: all one story
        raise RunDirError(f"{d}: damaged run directory ({type(e).__name__}: {e})") from None
    return model.to(device).eval(), vocabs, cfg, meta


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def read_router(path: str | Path) -> dict[str, Any] | None:
    """The routing of a routed model directory (`ROUTER_FILE`), checked; None for a plain run
    directory."""
    d = Path(path)
    f = d / ROUTER_FILE
    if not f.is_file():
        return None
    try:
        router = _read_json(f)
    except (OSError, ValueError) as e:
        raise RunDirError(f"{f}: not valid JSON ({e})") from None
    if not isinstance(router, dict) or router.get("format") != ROUTER_FORMAT:
        raise RunDirError(f'{f}: not a router file (expected "format": "{ROUTER_FORMAT}")')
    if router.get("version") != 1:
        raise RunDirError(f"{f}: router version {router.get('version')!r} is not supported (1)")
    problem = _router_problem(router)
    if problem:
        raise RunDirError(f"{f}: {problem}")
    for name in routing.ROUTES:
        if not (d / name).is_dir():
            raise RunDirError(f"{f}: its {name} model ({d / name}) is missing")
    return router


def _router_problem(router: dict[str, Any]) -> str | None:
    """What is wrong with a router's thresholds, if anything."""
    for key, top in (("min_share", 0.5), ("max_lower_sentences", 1.0)):
        share = router.get(key)
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= top:
            return f"{key} must be a number in [0, {top}], not {share!r}"
    count = router.get("min_sentences")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        return f"min_sentences must be a whole number of 1 or more, not {count!r}"
    return None


def export_run(src: str | Path, dst: str | Path, half: bool = True) -> Path:
    """A run directory reduced to what prediction needs (no checkpoint, no logs), with
    float16 weights by default: half the size, and the same predictions to within rounding.
    A routed model directory is exported model by model."""
    router = read_router(src)
    if router is not None:
        return export_routed(
            Path(src) / routing.CASED,
            Path(src) / routing.CASELESS,
            dst,
            half,
            router["min_share"],
            router["max_lower_sentences"],
            router["min_sentences"],
        )
    model, vocabs, cfg, meta = load_run(src)
    out = Path(dst)
    save_run(out, model, vocabs, cfg, meta, half=half)
    metrics = Path(src) / "metrics.json"
    if metrics.is_file():
        files.write_text(out / "metrics.json", metrics.read_text(encoding="utf-8"))
    return out


def export_routed(
    cased: str | Path,
    caseless: str | Path,
    dst: str | Path,
    half: bool = True,
    min_share: float = routing.MIN_SHARE,
    max_lower_sentences: float = routing.MAX_LOWER_SENTENCES,
    min_sentences: int = routing.MIN_SENTENCES,
) -> Path:
    """One model directory from two runs: documents with case go to `cased`, the rest to
    `caseless` (`rnner.routing`). Both must tag the same labels in the same scheme."""
    thresholds = {
        "min_share": min_share,
        "max_lower_sentences": max_lower_sentences,
        "min_sentences": min_sentences,
    }
    problem = _router_problem(thresholds)
    if problem:
        raise RunDirError(f"{dst}: {problem}")
    runs = {routing.CASED: Path(cased), routing.CASELESS: Path(caseless)}
    labels = {}
    for name, run in runs.items():
        _, vocabs, cfg, meta = load_run(run)
        labels[name] = (tuple(vocabs.tags.itos), cfg.data.scheme, meta.get("source_scheme"))
    if labels[routing.CASED] != labels[routing.CASELESS]:
        raise RunDirError(
            f"{caseless}: its tags or scheme differ from {cased}'s; a routed model needs one "
            "tag set"
        )
    out = Path(dst)
    for name, run in runs.items():
        export_run(run, out / name, half=half)
    files.write_json(
        out / ROUTER_FILE,
        {
            "format": ROUTER_FORMAT,
            "version": 1,
            **thresholds,
            "rule": "a document of at least min_sentences sentences, with at least min_share of "
            "its alphabetic words lower-case, min_share capitalised, and at most "
            "max_lower_sentences of its sentences (of 3 words or more) all lower-case is read "
            "by cased/, any other by caseless/ (rnner.routing)",
            "sources": {name: str(run) for name, run in runs.items()},
        },
    )
    return out


def is_model_dir(path: Path) -> bool:
    """A run directory or a routed model directory (by its files; not validated)."""
    return (path / "model.safetensors").is_file() or (path / ROUTER_FILE).is_file()


def default_model_path() -> Path:
    """The shipped model: beside the package source in a checkout, or RNNER_MODEL."""
    env = os.environ.get(ENV_MODEL)
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for root in (Path.cwd(), *here.parents):
        candidate = root / DEFAULT_MODEL
        if is_model_dir(candidate):
            return candidate
    raise RunDirError(
        f"no model given and the default model ({DEFAULT_MODEL}) was not found; "
        "pass a run directory or set RNNER_MODEL"
    )
