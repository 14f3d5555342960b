"""Training on perturbed text: the per-epoch hook behind `data.case_augment`,
`data.typo_augment` and `data.mention_augment` (the perturbations are in `rnner.perturb`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import perturb

if TYPE_CHECKING:
    from .batching import Encoded
    from .config import Config
    from .pipeline import Corpus, Split
    from .vocab import Vocabs


def active(cfg: Config) -> bool:
    d = cfg.data
    return bool(d.case_augment or d.typo_augment or d.mention_augment)


def epoch_data(
    cfg: Config, corpus: Corpus, vocabs: Vocabs, epoch: int, base: Split
) -> tuple[Encoded, np.ndarray]:
    """The encoded training data of `epoch` and its sentences per sequence: `base` itself
    when augmentation is off (the batches are then exactly those of a run without it)."""
    split = base
    if active(cfg):
        from .pipeline import encode_split

        d = cfg.data
        pool = perturb.mentions(corpus.train, corpus.scheme) if d.mention_augment else None
        sents = perturb.augment_epoch(
            corpus.train,
            corpus.scheme,
            cfg.train.seed,
            epoch,
            case=d.case_augment,
            case_unit=d.case_unit,
            case_lower=d.case_lower,
            typos=d.typo_augment,
            mention_share=d.mention_augment,
            pool=pool,
        )
        # case and typos keep every sentence's length: the soft targets still line up
        split = encode_split(sents, vocabs, cfg, corpus.scheme, corpus.trust, corpus.soft)
    return split.data, np.array([len(g) for g in split.groups])
