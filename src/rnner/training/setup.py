"""What training starts from: seeds, device, the network with its vocabularies and
embeddings, the optimizer and the learning-rate schedule (`prepare` makes them all)."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from .. import distributed, embeddings, tags
from ..batching import Batch
from ..config import Config
from ..files import sha256
from ..lexicon import Lexicon
from ..model import RNNTagger
from ..pipeline import Corpus, Split, encode_split, load_corpus, to_scheme
from ..vocab import Vocabs, build_vocabs, word_key
from . import distill
from .state import WeightAverage
from .warm import load_start, start_tags, warm_start


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def build_model(
    cfg: Config, corpus: Corpus, rng: np.random.Generator
) -> tuple[RNNTagger, Vocabs, dict[str, Any]]:
    """Vocabularies from train (plus dev/test words that have a pretrained vector), the
    embedding matrix, and the network; with `train.init`, the network starts from that
    run's weights (`warm`). Returns facts worth recording (coverage, sizes)."""
    m = cfg.model
    pretrained = None if m.embeddings == "random" else embeddings.load(m.embeddings)
    extra: list[str] = []
    if pretrained is not None:
        other = {t for s in corpus.dev + corpus.test for t in s.tokens}
        extra = embeddings.known_words(pretrained, other)
    train_tags = to_scheme(corpus.train, cfg.data.scheme, corpus.scheme)
    vocabs = build_vocabs(
        (s.tokens for s in corpus.train),
        train_tags,
        lowercase=cfg.data.lowercase,
        min_freq=cfg.data.min_word_freq,
        extra_words=extra,
    )
    start = load_start(cfg.train.init) if cfg.train.init else None
    if start is not None:
        vocabs.tags = start_tags(start, cfg.data.scheme, vocabs.tags)
    info: dict[str, Any] = {
        "words": len(vocabs.words),
        "chars": len(vocabs.chars),
        "tags": len(vocabs.tags),
    }
    if m.lexicon:
        vocabs.lexicon = Lexicon.load(m.lexicon, m.lexicon_lowercase)
        phrases = {t: len(p) for t, p in vocabs.lexicon.phrases.items()}
        info["lexicon"] = {"path": m.lexicon, "sha256": sha256(m.lexicon), "phrases": phrases}
    dim = pretrained.dim if pretrained is not None else m.word_dim
    model = RNNTagger(
        m,
        len(vocabs.words),
        len(vocabs.chars),
        len(vocabs.tags),
        dim,
        tags.constraints(vocabs.tags.itos, cfg.data.scheme),
        len(vocabs.lexicon.types) if vocabs.lexicon is not None else 0,
    )
    if pretrained is not None:
        matrix, hit = pretrained_matrix(vocabs, corpus, pretrained, rng)
        with torch.no_grad():
            model.words.weight.copy_(torch.from_numpy(matrix))
        if m.pretrained_dropout:
            model.keep_pretrained(torch.from_numpy(matrix), torch.from_numpy(hit))
        info["embedding_coverage"] = round(embeddings.coverage(hit, vocabs.words), 4)
    if m.singleton_unk:
        counts = Counter(word_key(t, vocabs.lowercase) for s in corpus.train for t in s.tokens)
        once = torch.tensor([counts[w] == 1 for w in vocabs.words.itos])
        model.keep_singletons(once)
        info["singletons"] = int(once.sum())
    if start is not None:
        info.update(warm_start(model, vocabs, start))
    return model, vocabs, info


def pretrained_matrix(
    vocabs: Vocabs, corpus: Corpus, pretrained: embeddings.Pretrained, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The word embedding matrix before training, and which rows have a pretrained vector;
    each word is looked up by a surface form the corpus spells it with."""
    surfaces: dict[str, str] = {}
    for s in corpus.train + corpus.dev + corpus.test:
        for t in s.tokens:
            surfaces.setdefault(word_key(t, vocabs.lowercase), t)
    return embeddings.build_matrix(vocabs.words, surfaces, pretrained, rng)


def param_groups(cfg: Config, model: RNNTagger) -> list[dict[str, Any]]:
    """Word embeddings in a group of their own, so their learning rate can be scaled."""
    emb = [p for p in model.words.parameters() if p.requires_grad]
    ids = {id(p) for p in emb}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups: list[dict[str, Any]] = [{"params": rest}]
    if emb:
        groups.append({"params": emb, "lr": cfg.train.lr * cfg.train.embedding_lr_scale})
    return groups


def make_optimizer(cfg: Config, params: list[Any]) -> torch.optim.Optimizer:
    """The fused kernels (one pass over all parameters) where torch has them: with a
    1M-row embedding matrix in the model, the unfused update is a fifth of a CPU step."""
    t = cfg.train
    kw: dict[str, Any] = {"lr": t.lr, "weight_decay": t.weight_decay}
    if t.optimizer == "sgd":
        kw.update(momentum=t.momentum, nesterov=t.nesterov)
    elif t.optimizer == "rmsprop":
        kw.update(momentum=t.momentum)
    cls = {
        "sgd": torch.optim.SGD,
        "adam": torch.optim.Adam,
        "adamw": torch.optim.AdamW,
        "nadam": torch.optim.NAdam,
        "rmsprop": torch.optim.RMSprop,
        "adagrad": torch.optim.Adagrad,
    }[t.optimizer]
    if t.optimizer in ("sgd", "adam", "adamw", "adagrad"):
        try:
            return cls(params, fused=True, **kw)
        except (RuntimeError, TypeError, ValueError):
            pass  # an older torch or a device without the fused kernel
    return cls(params, **kw)


def make_schedule(cfg: Config, opt: torch.optim.Optimizer) -> Any:
    """Stepped once per epoch; 'plateau' is stepped with the dev F1."""
    t = cfg.train
    if t.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="max", factor=t.gamma, patience=max(1, t.patience // 3)
        )
    factors: dict[str, Callable[[int], float]] = {
        "constant": lambda e: 1.0,
        "inverse_time": lambda e: 1.0 / (1.0 + t.lr_decay * e),
        "step": lambda e: t.gamma ** (e // t.step_size),
        "cosine": lambda e: 0.5 * (1 + math.cos(math.pi * min(e, t.epochs) / t.epochs)),
    }
    return torch.optim.lr_scheduler.LambdaLR(opt, factors[t.schedule])


@dataclass
class Setup:
    """Everything one training run works on, built once before its first epoch."""

    cfg: Config
    corpus: Corpus
    device: torch.device
    rng: np.random.Generator  # drew the random embedding rows, then draws the batch orders
    model: RNNTagger
    vocabs: Vocabs
    info: dict[str, Any]  # facts for run.json (vocabulary sizes, embedding coverage)
    train: Split
    unit_sizes: np.ndarray  # sentences per training sequence
    dev: Split
    dev_batches: list[Batch]
    opt: torch.optim.Optimizer
    sched: Any
    average: WeightAverage | None


def prepare(cfg: Config, corpus: Corpus | None = None) -> Setup:
    """Seed, read (unless `corpus` is given), build and encode, in the order that makes a
    seed reproduce a run: the numpy generator's draws start in `build_model`."""
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    set_seed(t.seed)
    rng = np.random.default_rng(t.seed)
    device = distributed.current().device(pick_device(t.device))  # cuda:LOCAL_RANK in a job
    corpus = corpus or load_corpus(cfg)
    model, vocabs, info = build_model(cfg, corpus, rng)
    model.to(device)
    if t.teachers:
        soft, info["distill"] = distill.soft_targets(cfg, corpus, vocabs, device)
        corpus = replace(corpus, soft=soft)
        model.distill_weight = t.distill_weight
    train = encode_split(corpus.train, vocabs, cfg, corpus.scheme, corpus.trust, corpus.soft)
    dev = encode_split(corpus.dev, vocabs, cfg, corpus.scheme)
    opt = make_optimizer(cfg, param_groups(cfg, model))
    return Setup(
        cfg,
        corpus,
        device,
        rng,
        model,
        vocabs,
        info,
        train,
        np.array([len(g) for g in train.groups]),
        dev,
        dev.batches(t.eval_batch_size),
        opt,
        make_schedule(cfg, opt),
        WeightAverage(model, t.ema) if t.ema else None,
    )
