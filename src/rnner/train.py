"""Training: one readable loop (`fit`) and the run directory it fills.

A run directory holds everything needed to reload, evaluate and reproduce a model:
`model.safetensors` (weights), `config.json` (the resolved config), `vocab.json`, `run.json`
(provenance: versions, data hashes, schemes), `metrics.json` (best epoch, dev/test scores) and
`log.jsonl` (one line per epoch). Every file is written atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from . import batching, checkpoint, embeddings, files, tags
from .batching import Encoded
from .config import Config
from .conll import Sentence, check_tags, read_conll
from .metrics import entity_scores, token_report
from .model import RNNTagger
from .provenance import describe
from .vocab import Vocabs, build_vocabs, word_key

Hook = Callable[[dict[str, Any]], None]


@dataclass
class Corpus:
    """The splits as read, plus the scheme their tags came in (predictions go back to it)."""

    train: list[Sentence]
    dev: list[Sentence]
    test: list[Sentence]
    scheme: str
    paths: dict[str, str] = field(default_factory=dict)
    trust: list[float] | None = None  # per training sentence (data.train_trust)


def load_corpus(cfg: Config) -> Corpus:
    from .data import resolve_split

    d = cfg.data
    paths = {}
    splits = {}
    trust: list[float] | None = None
    for split in ("train", "dev", "test"):
        given = getattr(d, split)
        path = Path(given) if given else resolve_split(d.dataset, split, d.data_dir or None)
        sents = read_conll(path, word_column=d.word_column, tag_column=d.tag_column)
        if split == "train" and d.train_trust:
            trust = read_trust(d.train_trust, sents, str(path))
            paths["train_trust"] = d.train_trust
        if d.max_sentences:
            sents = sents[: d.max_sentences]
            trust = trust[: d.max_sentences] if trust is not None else None
        splits[split] = sents
        paths[split] = str(path)
    if d.train_on_dev:  # the train+dev protocol: dev still reported, but no longer held out
        splits["train"] = splits["train"] + splits["dev"]
        if trust is not None:
            trust += [1.0] * len(splits["dev"])
    scheme = check_tags(splits["train"], paths["train"])
    types = {tags.split_tag(t)[1] for s in splits["train"] for t in s.tags} - {None}
    for split in ("dev", "test"):
        if split in splits:
            check_tags(splits[split], paths[split], types=types)
    return Corpus(splits["train"], splits["dev"], splits.get("test", []), scheme, paths, trust)


def read_trust(path: str, train: Sequence[Sentence], train_path: str) -> list[float]:
    """Per training sentence, the chance that its labels are right, from a data.train_trust
    file (`line<TAB>trust` lines, keyed by the line of a sentence's first token, so the file
    says which sentences it means; `#` starts a comment). Unlisted sentences get 1."""
    from .conll import InputError, read_text

    index = {s.line: i for i, s in enumerate(train)}
    trust = [1.0] * len(train)
    for n, raw in enumerate(read_text(path).split("\n"), 1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        fields = text.split()
        try:
            if len(fields) != 2:
                raise ValueError
            line, value = int(fields[0]), float(fields[1])
        except ValueError:
            raise InputError(path, n, f"expected 'LINE<TAB>TRUST', found {raw.strip()!r}") from None
        if line not in index:
            raise InputError(path, n, f"no training sentence starts at line {line} of "
                             f"{train_path}")
        if not 0 < value <= 1:
            raise InputError(path, n, f"trust {value} is not in (0, 1]")
        trust[index[line]] = value
    return trust


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def to_scheme(sents: Sequence[Sentence], scheme: str, source: str) -> list[list[str]]:
    return [tags.convert(list(s.tags), scheme, source) for s in sents]


def build_model(
    cfg: Config, corpus: Corpus, rng: np.random.Generator
) -> tuple[RNNTagger, Vocabs, dict[str, Any]]:
    """Vocabularies from train (plus dev/test words that have a pretrained vector), the
    embedding matrix, and the network. Returns facts worth recording (coverage, sizes)."""
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
    info: dict[str, Any] = {"words": len(vocabs.words), "chars": len(vocabs.chars),
                            "tags": len(vocabs.tags)}
    dim = pretrained.dim if pretrained is not None else m.word_dim
    model = RNNTagger(m, len(vocabs.words), len(vocabs.chars), len(vocabs.tags), dim,
                      tags.constraints(vocabs.tags.itos, cfg.data.scheme))
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
    return model, vocabs, info


def pretrained_matrix(vocabs: Vocabs, corpus: Corpus, pretrained: embeddings.Pretrained,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
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
    cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
           "nadam": torch.optim.NAdam, "rmsprop": torch.optim.RMSprop,
           "adagrad": torch.optim.Adagrad}[t.optimizer]
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
class Split:
    """A split encoded for the network: one row per unit (a sentence, or a run of
    sentences of one document), and the map back to sentences."""

    data: Encoded
    groups: list[list[int]]
    lengths: list[int]  # of the sentences

    def batches(self, batch_size: int) -> list[batching.Batch]:
        return list(batching.iterate(self.data, batch_size))


def encode_split(sents: Sequence[Sentence], vocabs: Vocabs, cfg: Config,
                 source_scheme: str | None = None,
                 trust: Sequence[float] | None = None) -> Split:
    """Tags (when `source_scheme` is given) are converted to the training scheme; tags that
    training never saw become O here (gold is scored from the file, not from these ids).
    `trust`, one per sentence, is given to each of its tokens."""
    groups = batching.units([s.doc_id for s in sents], [len(s) for s in sents],
                            cfg.data.context, cfg.data.max_context_tokens)
    tokens = batching.join_units([s.tokens for s in sents], groups)
    tag_ids = None
    if source_scheme is not None:
        known = vocabs.tags
        seqs = [[t if t in known else "O" for t in ts]
                for ts in to_scheme(sents, cfg.data.scheme, source_scheme)]
        tag_ids = batching.join_units(seqs, groups)
    token_trust = None
    if trust is not None:
        token_trust = batching.join_units([[t] * len(s) for s, t in zip(sents, trust, strict=True)],
                                          groups)
    return Split(batching.encode(tokens, vocabs, tag_ids, token_trust), groups,
                 [len(s) for s in sents])


@torch.no_grad()
def predict_ids(model: RNNTagger, split: Split, batches: list[batching.Batch],
                device: torch.device) -> list[list[int]]:
    """Tag ids per sentence, in dataset order."""
    model.eval()
    rows: list[list[int]] = [[] for _ in split.groups]
    for b in batches:
        ids = model.decode(b.to(device)).cpu().numpy()
        for row, i, length in zip(ids, b.index.tolist(), b.lengths.tolist(), strict=True):
            rows[i] = row[:length].tolist()
    return batching.split_units(rows, split.groups, split.lengths)


def evaluate_split(
    model: RNNTagger,
    split: Split,
    batches: list[batching.Batch],
    sents: Sequence[Sentence],
    vocabs: Vocabs,
    cfg: Config,
    source_scheme: str,
    device: torch.device,
    report: bool = False,
) -> dict[str, Any]:
    """Entity scores (conlleval) on predictions mapped back to the file's own scheme."""
    ids = predict_ids(model, split, batches, device)
    names = vocabs.tags.itos
    pred = [tags.convert([names[i] for i in row], source_scheme, cfg.data.scheme) for row in ids]
    gold = [list(s.tags) for s in sents]
    result: dict[str, Any] = {"entity": entity_scores(gold, pred).to_dict()}
    if report:
        text, table = token_report(gold, pred)
        result["token"] = {"accuracy": result["entity"]["accuracy"], "report": table,
                           "report_text": text}
    result["predictions"] = pred
    return result


class Interrupted(Exception):
    """Training stopped by SIGINT/SIGTERM after writing a checkpoint."""

    def __init__(self, output: Path):
        self.output = output
        super().__init__(f"interrupted; resume with: rnner train --resume {output}")


@contextlib.contextmanager
def _stop_requests() -> Iterator[list[bool]]:
    """A flag set by Ctrl-C or SIGTERM, so the loop stops between two batches."""
    flag = [False]

    def handler(signum: int, frame: Any) -> None:
        flag[0] = True

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


@dataclass
class Progress:
    """Counters a resumed run needs besides model, optimizer and RNGs."""

    epoch: int = 1  # the epoch in progress
    position: int = 0  # batches of it already done
    best_f1: float = -1.0
    best_epoch: int = 0
    stale: int = 0
    elapsed: float = 0.0
    epoch_seconds: float = 0.0  # of the epoch in progress, and its running totals:
    loss: float = 0.0
    sequences: int = 0
    sentences: int = 0
    tokens: int = 0
    log: list[str] = field(default_factory=list)


class WeightAverage:
    """An exponential moving average of a model's parameters (Polyak averaging).

    The decay ramps up as in TensorFlow's ExponentialMovingAverage, (1 + n) / (10 + n) until
    it reaches `decay`, so the average forgets the random initial weights within the first
    epoch instead of dragging them along for thousands of steps.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.average = {k: p.detach().clone() for k, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        weight = 1 - min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, p in model.named_parameters():
            self.average[k].lerp_(p, weight)

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own ones after it."""
        own = {k: p.detach().clone() for k, p in model.named_parameters()}
        with torch.no_grad():
            for k, p in model.named_parameters():
                p.copy_(self.average[k])
        try:
            yield
        finally:
            with torch.no_grad():
                for k, p in model.named_parameters():
                    p.copy_(own[k])

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "average": self.average}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = state["updates"]
        for k, v in state["average"].items():
            self.average[k].copy_(v)


def _save_checkpoint(out: Path, model: RNNTagger, opt: torch.optim.Optimizer, sched: Any,
                     progress: Progress, epoch_rng: dict,
                     average: WeightAverage | None) -> None:
    checkpoint.save(out, {
        "model": model.state_dict(),
        "average": average.state_dict() if average else None,
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "progress": dataclasses.asdict(progress),
        "epoch_rng": epoch_rng,  # numpy state at the start of the epoch: same batch order
        "torch_rng": torch.get_rng_state(),
        "python_rng": random.getstate(),
    })


def fit(
    cfg: Config,
    output: str | Path,
    corpus: Corpus | None = None,
    hooks: Sequence[Hook] = (),
    progress: bool = True,
    resume: bool = False,
) -> dict[str, Any]:
    """Train on `train`, keep the epoch with the best dev entity F1, score it on test.

    A checkpoint is written after every epoch and on SIGINT/SIGTERM (then `Interrupted` is
    raised); `resume=True` continues from it and ends with exactly the metrics of an
    uninterrupted run (on the CPU).
    """
    t = cfg.train
    out = Path(output)
    if t.threads:
        torch.set_num_threads(t.threads)
    set_seed(t.seed)
    rng = np.random.default_rng(t.seed)
    device = pick_device(t.device)
    corpus = corpus or load_corpus(cfg)
    model, vocabs, info = build_model(cfg, corpus, rng)
    model.to(device)
    source = corpus.scheme

    train_split = encode_split(corpus.train, vocabs, cfg, source, corpus.trust)
    train_data = train_split.data
    unit_sizes = np.array([len(g) for g in train_split.groups])  # sentences per sequence
    dev = encode_split(corpus.dev, vocabs, cfg, source)
    dev_batches = dev.batches(t.eval_batch_size)
    opt = make_optimizer(cfg, param_groups(cfg, model))
    sched = make_schedule(cfg, opt)
    average = WeightAverage(model, t.ema) if t.ema else None

    from .predict import load_weights, save_run  # the run-directory format lives with its loader

    state = Progress()
    best_state: dict[str, torch.Tensor] = {}
    epoch_rng: dict | None = None
    if resume:
        ck = checkpoint.load(out)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        if average is not None:
            average.load_state_dict(ck["average"])
        state = Progress(**ck["progress"])
        epoch_rng = ck["epoch_rng"]
        torch.set_rng_state(ck["torch_rng"])
        random.setstate(_tuples(ck["python_rng"]))
        if state.best_epoch:
            best_state = load_weights(out, device)
    else:
        out.mkdir(parents=True, exist_ok=True)
        meta = {"source_scheme": source, **info, **describe(corpus.paths, t.seed)}
        save_run(out, model, vocabs, cfg, meta)
    log_path = out / "log.jsonl"
    started = time.perf_counter() - state.elapsed
    with _stop_requests() as stop:
        while state.epoch <= t.epochs:
            epoch = state.epoch
            if epoch_rng is not None:
                rng.bit_generator.state = epoch_rng
            epoch_rng = rng.bit_generator.state
            batches = batching.batch_indices(train_data.lengths, t.batch_size, rng)
            model.train()
            t0 = time.perf_counter() - state.epoch_seconds
            bar = tqdm(batches[state.position :], desc=f"epoch {epoch}", unit="batch",
                       leave=False, disable=not progress or not sys.stderr.isatty(),
                       dynamic_ncols=True,
                       initial=state.position, total=len(batches))
            for step, index in enumerate(bar, start=state.position):
                b = batching.make_batch(train_data, index).to(device)
                loss = model.loss(b)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if t.clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip)
                opt.step()
                if average is not None:
                    average.update(model)
                state.loss += loss.item() * len(index)
                state.sequences += len(index)
                state.sentences += int(unit_sizes[index].sum())
                state.tokens += b.num_tokens
                if progress and step % 20 == 0:
                    rate = state.sentences / max(time.perf_counter() - t0, 1e-9)
                    bar.set_postfix(loss=f"{state.loss / state.sequences:.3f}",
                                    sents_s=f"{rate:.0f}")
                if stop[0]:
                    state.position = step + 1
                    state.epoch_seconds = time.perf_counter() - t0
                    state.elapsed = time.perf_counter() - started
                    _save_checkpoint(out, model, opt, sched, state, epoch_rng, average)
                    bar.close()
                    raise Interrupted(out)
            bar.close()
            train_time = time.perf_counter() - t0
            with average.applied(model) if average else contextlib.nullcontext():
                scores = evaluate_split(model, dev, dev_batches, corpus.dev, vocabs, cfg,
                                        source, device)["entity"]
                dev_f1 = scores["f1"]
                # "last" is for training on train+dev, where dev F1 is no longer a fair judge.
                improved = dev_f1 > state.best_f1 or t.select == "last"
                if improved:
                    state.best_f1, state.best_epoch, state.stale = dev_f1, epoch, 0
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    save_run(out, model, vocabs, cfg, None)
                else:
                    state.stale += 1
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(dev_f1)
            else:
                sched.step()
            record = {
                "epoch": epoch,
                "train_loss": state.loss / max(state.sequences, 1),
                "dev_precision": scores["precision"],
                "dev_recall": scores["recall"],
                "dev_f1": dev_f1,
                "lr": opt.param_groups[0]["lr"],
                "train_seconds": round(train_time, 3),
                "sentences_per_s": round(state.sentences / train_time, 1),
                "tokens_per_s": round(state.tokens / train_time, 1),
                "elapsed_seconds": round(time.perf_counter() - started, 3),
                "best": improved,
            }
            state.log.append(json.dumps(record))
            files.write_text(log_path, "\n".join(state.log) + "\n")
            state.epoch, state.position, state.epoch_seconds = epoch + 1, 0, 0.0
            state.loss, state.sequences, state.sentences, state.tokens = 0.0, 0, 0, 0
            state.elapsed = time.perf_counter() - started
            epoch_rng = None
            done = bool(t.patience and state.stale >= t.patience)
            if done or state.epoch > t.epochs:
                state.epoch = t.epochs + 1
            _save_checkpoint(out, model, opt, sched, state, rng.bit_generator.state, average)
            for hook in hooks:
                hook(record)
            if progress:
                tqdm.write(
                    f"epoch {epoch:3d}  loss {record['train_loss']:8.4f}  dev P/R/F1 "
                    f"{100 * record['dev_precision']:.2f}/{100 * record['dev_recall']:.2f}/"
                    f"{100 * dev_f1:.2f}  {train_time:5.1f}s  "
                    f"{record['sentences_per_s']:.0f} sent/s" + ("  *" if improved else "")
                )
            if done:
                break

    model.load_state_dict(best_state)
    metrics: dict[str, Any] = {
        "best_epoch": state.best_epoch,
        "epochs_run": len(state.log),
        "train_seconds": round(state.elapsed, 2),
        "device": str(device),
    }
    finals = [("dev", corpus.dev, dev, dev_batches)] if corpus.dev else []
    if corpus.test:  # dev is already encoded (above); test only now
        test = encode_split(corpus.test, vocabs, cfg, source)
        finals.append(("test", corpus.test, test, test.batches(t.eval_batch_size)))
    for split, sents, enc, batches in finals:
        res = evaluate_split(model, enc, batches, sents, vocabs, cfg, source, device,
                             report=True)
        res.pop("predictions")
        metrics[split] = res
    files.write_json(out / "metrics.json", metrics)
    return metrics


def _tuples(x: Any) -> Any:
    """JSON turned Python's random state tuples into lists; turn them back."""
    return tuple(_tuples(v) for v in x) if isinstance(x, list | tuple) else x
