"""Warm start (`train.init = RUN_DIR`): the network begins from a trained run's weights.

This is how a model is adapted rather than trained from nothing: fine-tune the shipped model
on one's own data, or on augmented copies of its own (docs/robustness.md). The new run builds
its vocabularies from its own data as always; the rows of words and characters both runs know
are copied by their string, the rest keep their fresh initialisation. Every other tensor must
have the same name and shape in both networks, and the tag sets must be equal: a run whose
architecture or tags differ cannot be continued, and is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..config import Config
from ..errors import ConfigError
from ..files import sha256
from ..model import RNNTagger
from ..runs import load_run
from ..vocab import Vocab, Vocabs

# Tables whose rows are indexed by a vocabulary, and which vocabulary.
ROWS = {"words.weight": "words", "chars.embed.weight": "chars"}


def _copy_rows(dst: torch.Tensor, src: torch.Tensor, new: Vocab, old: Vocab) -> int:
    ids = [(i, old.stoi[s]) for i, s in enumerate(new.itos) if s in old.stoi]
    if ids:
        rows = torch.tensor(ids)
        dst[rows[:, 0]] = src[rows[:, 1]].to(dst.dtype)
    return len(ids)


@dataclass
class Start:
    """The run a warm start begins from, loaded once."""

    path: Path
    model: RNNTagger
    vocabs: Vocabs
    cfg: Config


def load_start(path: str | Path) -> Start:
    with torch.random.fork_rng(devices=[]):  # building its modules draws random numbers
        model, vocabs, cfg, _ = load_run(path)
    return Start(Path(path), model, vocabs, cfg)


def start_tags(start: Start, scheme: str, tags: Vocab) -> Vocab:
    """The run's own tag vocabulary, so its output layer carries over, when it tags in the
    same scheme and the new training data has no tag it lacks (fine-tuning data often holds
    only some of the tags)."""
    path, old, old_cfg = start.path, start.vocabs, start.cfg
    if old_cfg.data.scheme != scheme:
        raise ConfigError(
            "train.init", f"{path}: it tags in {old_cfg.data.scheme}, this config in {scheme}"
        )
    unknown = [t for t in tags.itos if t not in old.tags.stoi]
    if unknown:
        raise ConfigError(
            "train.init", f"{path}: the training data has tags {unknown} that it lacks"
        )
    return old.tags


def warm_start(model: RNNTagger, vocabs: Vocabs, start: Start) -> dict[str, Any]:
    """Copy the run's weights into `model`; returns what was shared, for run.json."""
    where = "train.init"
    path, old_model, old_vocabs = start.path, start.model, start.vocabs
    if old_vocabs.tags.itos != vocabs.tags.itos:
        raise ConfigError(
            where,
            f"{path}: its tags {old_vocabs.tags.itos} differ from this run's {vocabs.tags.itos}",
        )
    if old_vocabs.lowercase != vocabs.lowercase:
        raise ConfigError(where, f"{path}: it looks words up with a different data.lowercase")
    old = old_model.state_dict()
    new = model.state_dict()
    if set(old) != set(new):
        diff = sorted(set(old) ^ set(new))
        raise ConfigError(
            where, f"{path}: its network differs from this config's (parameters {diff})"
        )
    weights = Path(path) / "model.safetensors"
    shared: dict[str, Any] = {"init": str(path), "init_sha256": sha256(weights)}
    with torch.no_grad():
        for name, tensor in new.items():
            if name in ROWS:
                kind = ROWS[name]
                n = _copy_rows(tensor, old[name], getattr(vocabs, kind), getattr(old_vocabs, kind))
                shared[f"init_{kind}"] = n
            elif tensor.shape != old[name].shape:
                raise ConfigError(
                    where,
                    f"{path}: {name} has shape {tuple(old[name].shape)} there and "
                    f"{tuple(tensor.shape)} in this config's network",
                )
            else:
                tensor.copy_(old[name])
    return shared
