"""Typed run configuration: TOML in, validated dataclasses out, JSON saved with every model.

A config has three sections, `data`, `model` and `train`, each a dataclass below. Unknown keys,
wrong types and out-of-range values are refused with a `ConfigError` that names the key.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnner.errors import ConfigError


@dataclass
class DataConfig:
    train: str = ""  # path; empty: the dataset's split in the data directory
    dev: str = ""
    test: str = ""
    dataset: str = "conll2003"
    data_dir: str = ""  # empty: RNNER_DATA, ../shared/data, ~/.cache/rnner/data
    word_column: int = 0
    tag_column: int = -1
    scheme: str = "BIOES"  # the scheme the model is trained in; scores are always on spans
    lowercase: bool = True  # word vocabulary keys (GloVe 6B is lower-cased; chars keep case)
    min_word_freq: int = 1
    max_sentences: int = 0  # use only the first N sentences of each split (0: all)
    context: str = "sentence"  # sentence | document: what one sequence of the network holds
    max_context_tokens: int = 256  # document context: longest run of sentences, in tokens
    train_on_dev: bool = False  # train on train+dev (then use train.select = "last")
    # A file of training sentences whose labels are in doubt (`rnner crossweigh` writes one):
    # each line the line of a sentence's first token in the training file, a tab, and
    # the chance that its labels are right. The loss reads their tags through a noisy channel
    # (crf.label_channel); sentences not listed are trusted fully. Empty: all are.
    train_trust: str = ""
    # Robustness to the text users have (docs/robustness.md; `rnner robustness` measures it).
    # All off by default. Each epoch perturbs fresh copies of the training sentences, drawn
    # from generators seeded by (train.seed, epoch): a resumed run redraws the same text.
    # Word lookups are lower-cased already (`lowercase`), so case augmentation teaches the
    # casing feature and the char encoder that an entity can come in any case.
    case_augment: float = 0.0  # share of training sentences lower-, UPPER- or Title-cased
    # "document": the share is of documents, each cased as a whole (as users' text comes)
    case_unit: str = "sentence"
    # 0: the three cases equally; else the chance that a recased unit is lower-cased (the
    # rest UPPER or Title equally)
    case_lower: float = 0.0
    typo_augment: float = 0.0  # share of training words (2+ letters) given one typo
    # Chance that each training mention is swapped for another training mention of its type
    # (Dai & Adel 2020), so names are recognised by their context, not learnt by heart.
    mention_augment: float = 0.0


@dataclass
class ModelConfig:
    embeddings: str = "glove-6b-50d"  # "random", "glove-6b-50d", or a GloVe/word2vec text file
    word_dim: int = 50  # only for random embeddings; pretrained ones set their own
    freeze_embeddings: bool = False
    casing_dim: int = 0  # embedding of a word's casing class (0: off)
    # Every token also reads the shares of its sequence's words that are lower-case, UPPER,
    # Title and mIxed (4 numbers, from the casing classes), so that with case augmentation
    # the network can tell a cased article from a lower-cased one (docs/robustness.md
    # measures it: a small effect, kept by the selection rule's tie-break).
    case_shares: bool = False
    char_encoder: str = "cnn"  # none | cnn | lstm
    char_dim: int = 30
    char_hidden: int = 50  # CNN filters, or the char BiLSTM's total hidden size
    char_kernel: int = 3
    cell: str = "lstm"  # rnn | gru | lstm
    hidden_size: int = 200  # per direction
    bidirectional: bool = True
    layers: int = 1
    dropout: float = 0.5
    word_dropout: float = 0.0  # chance that a training token's word becomes UNK
    # Chance that a training token whose word occurs once in train becomes UNK (Lample et
    # al. 2016 used 0.5): UNK then learns from the rare words that unknown ones resemble.
    singleton_unk: float = 0.0
    # Chance that a training token reads its word's original pretrained vector instead of the
    # fine-tuned one. Dev/test words unseen in training keep their original vectors while the
    # training words' drift; this teaches the network to read both.
    pretrained_dropout: float = 0.0
    # Variational dropout (Gal & Ghahramani 2016): one mask per sentence, shared by all its
    # time steps, on the recurrent layers' inputs and outputs; the char encoder keeps its own.
    locked_dropout: bool = False
    # Each token also reads the mean recurrent state of every token of its sequence spelled
    # the same way (itself included). With data.context = "document" a sequence is a run of
    # one article's sentences, so a name mentioned again is tagged knowing its other contexts
    # (the non-local consistency features of Ratinov & Roth 2009, here learned).
    repeat_pooling: bool = False
    # "spelling": exactly the same characters; "lowercase": the same up to case, so an
    # all-capitals headline's JAPAN pools with the article's Japan.
    repeat_key: str = "spelling"
    # Recurrent layers that read each state beside its pool before the tag scores, so a
    # token's neighbours learn from its other mentions too (0: the scores read them directly).
    pool_layers: int = 0
    # Weight of an auxiliary language-modelling loss (Rei 2017; 0: off): from the first
    # recurrent layer, the forward states predict the next word and the backward states the
    # previous one, through a `lm_dim`-wide tanh layer and an adaptive softmax over the
    # `lm_vocab` most frequent training words (the rest as UNK). Only the labelled training
    # text is read, and tagging never uses the head: a regulariser, not a pretrained language
    # model.
    lm_weight: float = 0.0
    lm_vocab: int = 7500
    lm_dim: int = 50
    # Lexicon match features (Chiu & Nichols 2016): a lexicon file (`rnner lexicon build`
    # writes one; empty: off). Each token reads, per lexicon type, whether it begins,
    # continues, ends or is a whole phrase of that type's longest match, as a `lexicon_dim`
    # embedding beside its word vector. The run directory keeps its own copy of the file.
    lexicon: str = ""
    lexicon_dim: int = 5
    lexicon_lowercase: bool = False  # match up to case ("PARIS", "paris"), not exactly
    output: str = "crf"  # crf | softmax


@dataclass
class TrainConfig:
    optimizer: str = "sgd"  # sgd | adam | adamw | nadam | rmsprop | adagrad
    lr: float = 0.015
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "inverse_time"  # constant | inverse_time | step | cosine | plateau
    lr_decay: float = 0.05  # inverse_time: lr / (1 + lr_decay * epoch)
    step_size: int = 10  # step: epochs between decays
    gamma: float = 0.5  # step / plateau: decay factor
    clip: float = 5.0  # gradient norm clipping (0: off)
    # Learning rate of the word embeddings relative to `lr`. Below 1, trained words stay
    # near the pretrained space that the dev/test-only words (never updated) still live in.
    embedding_lr_scale: float = 1.0
    batch_size: int = 10
    eval_batch_size: int = 512
    epochs: int = 50
    patience: int = 10  # early stopping on dev F1 (0: off)
    select: str = "best_dev"  # best_dev | last: which epoch's model the run keeps
    # Weight averaging: the decay of an exponential moving average of the weights, taken
    # after every step (0: off). Dev scoring, the choice of epoch and the saved model then
    # use the averaged weights, which are less at the mercy of the last few batches.
    ema: float = 0.0
    seed: int = 1
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: int = 0  # torch CPU threads (0: torch's default)
    # A run directory whose weights the network starts from (fine-tuning; "": none). Words
    # and characters both runs know keep their trained rows; tags and architecture must match.
    init: str = ""
    # Distillation (docs/accuracy-levers.md): run directories of teacher models. Their mean
    # tag marginals over the training sentences become soft targets, and the loss is
    # (1 - distill_weight) * gold likelihood + distill_weight * the cross-entropy of the
    # model's marginals against them. Teachers must share the tag set and scheme and must
    # not have been trained on dev or test. Their marginals are computed once and cached in
    # `distill_cache` (empty: ~/.cache/rnner/distill), keyed by teachers and training text.
    teachers: list[str] = field(default_factory=list)
    distill_weight: float = 0.5
    distill_cache: str = ""


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Config:
        return validate(_build(cls, raw, ""))

    @classmethod
    def load(cls, path: str | Path, overrides: list[str] | None = None) -> Config:
        """Read a TOML (or the JSON a run saved) and apply `section.key=value` overrides."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(str(path), e.strerror or str(e)) from None
        if path.suffix == ".json":
            import json

            raw = json.loads(text)
        else:
            try:
                raw = tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                raise ConfigError(str(path), f"not valid TOML: {e}") from None
        for item in overrides or []:
            apply_override(raw, item)
        return cls.from_dict(raw)


CHOICES: dict[str, tuple[str, ...]] = {
    "data.scheme": ("IOB1", "IOB2", "BIOES", "IOE1"),
    "data.context": ("sentence", "document"),
    "data.case_unit": ("sentence", "document"),
    "model.char_encoder": ("none", "cnn", "lstm"),
    "model.cell": ("rnn", "gru", "lstm"),
    "model.output": ("crf", "softmax"),
    "model.repeat_key": ("spelling", "lowercase"),
    "train.optimizer": ("sgd", "adam", "adamw", "nadam", "rmsprop", "adagrad"),
    "train.select": ("best_dev", "last"),
    "train.schedule": ("constant", "inverse_time", "step", "cosine", "plateau"),
}

# (low, high) inclusive bounds; None: unbounded on that side.
RANGES: dict[str, tuple[float | None, float | None]] = {
    "data.min_word_freq": (1, None),
    "data.max_sentences": (0, None),
    "data.max_context_tokens": (1, None),
    "data.case_augment": (0.0, 1.0),
    "data.case_lower": (0.0, 1.0),
    "data.typo_augment": (0.0, 1.0),
    "data.mention_augment": (0.0, 1.0),
    "model.word_dim": (1, None),
    "model.casing_dim": (0, None),
    "model.char_dim": (1, None),
    "model.char_hidden": (1, None),
    "model.char_kernel": (1, None),
    "model.hidden_size": (1, None),
    "model.layers": (1, None),
    "model.pool_layers": (0, None),
    "model.dropout": (0.0, 0.99),
    "model.word_dropout": (0.0, 0.99),
    "model.singleton_unk": (0.0, 1.0),
    "model.pretrained_dropout": (0.0, 1.0),
    "model.lm_weight": (0.0, None),
    "model.lm_vocab": (1, None),
    "model.lm_dim": (1, None),
    "model.lexicon_dim": (1, None),
    "train.lr": (0.0, None),
    "train.momentum": (0.0, 0.9999),
    "train.weight_decay": (0.0, None),
    "train.lr_decay": (0.0, None),
    "train.step_size": (1, None),
    "train.gamma": (0.0, 1.0),
    "train.clip": (0.0, None),
    "train.embedding_lr_scale": (0.0, None),
    "train.ema": (0.0, 0.9999),
    "train.batch_size": (1, None),
    "train.eval_batch_size": (1, None),
    "train.epochs": (1, None),
    "train.patience": (0, None),
    "train.threads": (0, None),
    "train.distill_weight": (0.0, 1.0),
}


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(prefix or "file", f"expected a table, found {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(key, f"unknown key; known keys here: {', '.join(sorted(known))}")
    values = {}
    for name, value in raw.items():
        key = f"{prefix}.{name}" if prefix else name
        hint = hints[name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, key)
        else:
            values[name] = _coerce(key, value, hint)
    return cls(**values)


def _coerce(key: str, value: Any, hint: Any) -> Any:
    allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    for t in allowed:
        if t is type(None) and value is None:
            return None
        if t is bool and isinstance(value, bool):
            return value
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if t is str and isinstance(value, str):
            return value
        strings = isinstance(value, list) and all(isinstance(x, str) for x in value)
        if typing.get_origin(t) is list and strings:
            return list(value)
    names = " or ".join(getattr(t, "__name__", str(t)) for t in allowed)
    raise ConfigError(key, f"expected {names}, found {type(value).__name__} {value!r}")


def validate(cfg: Config) -> Config:
    flat = {
        f"{section}.{k}": v
        for section in ("data", "model", "train")
        for k, v in dataclasses.asdict(getattr(cfg, section)).items()
    }
    for key, options in CHOICES.items():
        if flat[key] not in options:
            raise ConfigError(key, f"{flat[key]!r} is not one of {', '.join(options)}")
    for key, (lo, hi) in RANGES.items():
        v = flat[key]
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            bounds = f"[{lo}, {hi if hi is not None else 'inf'}]"
            raise ConfigError(key, f"{v!r} is out of range {bounds}")
    if cfg.data.train_on_dev and cfg.train.select != "last":
        raise ConfigError("data.train_on_dev", 'needs train.select = "last": dev is trained on')
    for name in ("repeat_key", "pool_layers"):
        changed = getattr(cfg.model, name) != getattr(ModelConfig, name)  # the default
        if changed and not cfg.model.repeat_pooling:
            raise ConfigError(f"model.{name}", "needs model.repeat_pooling = true")
    for name in ("lexicon_dim", "lexicon_lowercase"):
        changed = getattr(cfg.model, name) != getattr(ModelConfig, name)
        if changed and not cfg.model.lexicon:
            raise ConfigError(f"model.{name}", "needs model.lexicon (a lexicon file)")
    if cfg.train.teachers and cfg.data.mention_augment:
        raise ConfigError(
            "train.teachers",
            "cannot be combined with data.mention_augment (swapped mentions change the "
            "sentences the teachers' marginals belong to)",
        )
    if cfg.model.pretrained_dropout and cfg.model.embeddings == "random":
        raise ConfigError("model.pretrained_dropout", "needs pretrained model.embeddings")
    if cfg.train.nesterov and (cfg.train.optimizer != "sgd" or cfg.train.momentum == 0):
        raise ConfigError("train.nesterov", "needs optimizer 'sgd' with momentum > 0")
    return cfg


def parse_value(text: str) -> Any:
    """A `--set` value as TOML (numbers, booleans, strings, arrays), else the bare string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one `section.key=value` to a raw config dict (in place)."""
    if "=" not in item:
        raise ConfigError(item, "an override must look like section.key=value")
    dotted, text = item.split("=", 1)
    parts = dotted.strip().split(".")
    if len(parts) != 2 or not all(parts):
        raise ConfigError(dotted, "an override key must look like section.key")
    section, key = parts
    if section not in ("data", "model", "train"):
        raise ConfigError(dotted, "unknown section; known sections: data, model, train")
    raw.setdefault(section, {})[key] = parse_value(text.strip())
