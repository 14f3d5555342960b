"""`rnner bench`: how fast a config's model trains and tags, on real CoNLL batches, set against
the machine's own fp32 matmul speed so that a slower number can be told apart from a slower
machine. One process, one run; a table for people, `--json` (one object) for scripts.

What is timed, and why that way:
- training: full steps (batch assembly, forward, loss, backward, clipping, optimizer step) over
  the batches the first training epoch would see (same seed, same length bucketing, the
  config's batch size), after warm-up steps; the median of repetitions over the same batches.
- inference: `model.decode` under `torch.inference_mode` over the dev set at several batch
  sizes, batched by length as evaluation does; batch 1 is timed sentence by sentence on an
  evenly spaced sample of dev, which also gives the latency median and p90.
- FLOPs: an analytic count per token (`rnner.model.model_flops`), so that utilization =
  achieved FLOP/s / matmul FLOP/s says how far the model is from what the machine could do.
- the floor: the bare recurrent core (the config's encoder and a linear layer to the tags,
  cross-entropy, the same optimizer and clipping) on exactly the timed batches' shapes, its
  repetitions interleaved with the full steps'. `train_floor_fraction` (full rate / floor
  rate) is how much of a step the parts around the recurrent layer leave to it.
- `--profile`: where a training step's time goes, by cutting the autograd graph between parts.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Config, ConfigError
from .provenance import peak_rss_mb

if TYPE_CHECKING:  # torch is imported where used, so that `rnner --help` stays fast
    import numpy as np
    import torch

    from .batching import Encoded
    from .model import RNNTagger
    from .training import WeightAverage

DEFAULT_CONFIG = "configs/conll03.toml"
DESCRIPTION = (
    "Measure training and inference speed of a config's model on CoNLL batches, "
    "against this machine's matmul speed."
)


@dataclass(frozen=True)
class Plan:
    """How much to measure. The full plan takes a few minutes on 2 cores; QUICK under one."""

    warmup: int = 10  # training steps before timing
    train_batches: int = 100  # timed training steps per repetition
    train_reps: int = 5
    infer_batch_sizes: tuple[int, ...] = (1, 32, 256, 1024)
    infer_reps: int = 3  # passes over dev per batch size (batch 1: one pass over the sample)
    latency_sentences: int = 300  # dev sample for batch 1
    matmul_size: int = 1024
    matmul_reps: int = 10
    profile_batches: int = 50


QUICK = Plan(
    warmup=3,
    train_batches=20,
    train_reps=3,
    infer_batch_sizes=(1, 256, 1024),
    infer_reps=1,
    latency_sentences=100,
    matmul_reps=5,
    profile_batches=20,
)


def matmul_gflops(size: int, reps: int, device: torch.device) -> float:
    """The machine's own fp32 square-matmul speed (median of `reps`), the yardstick."""
    import torch

    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    out = torch.empty(size, size, device=device)
    for _ in range(2):
        torch.matmul(a, b, out=out)
    times = []
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        torch.matmul(a, b, out=out)
        _sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * size**3 / statistics.median(times) / 1e9


# --- the model and its data, as training builds them ---------------------------------------


@dataclass
class Setup:
    """What the benchmark measures on: `training.prepare`'s model and encoded splits."""

    cfg: Config
    model: RNNTagger
    train: Encoded
    train_units: np.ndarray  # sentences per encoded row (1 unless document context)
    dev: Encoded
    device: torch.device
    rng: np.random.Generator  # in the state `fit` has when it draws epoch 1's batches
    num_tags: int
    word_dim: int
    opt: torch.optim.Optimizer  # fresh, as epoch 1 starts with it
    average: WeightAverage | None


def prepare(cfg: Config, device: torch.device | None = None) -> Setup:
    """Seed, corpus, vocabularies, embeddings, model and optimizer exactly as `training.fit`
    makes them (`training.prepare`: it also sets the config's torch threads); `device`, when
    given, replaces the config's `train.device`."""
    from . import training

    if device is not None:
        cfg = replace(cfg, train=replace(cfg.train, device=str(device)))
    t = training.prepare(cfg)
    return Setup(
        cfg,
        t.model,
        t.train.data,
        t.unit_sizes,
        t.dev.data,
        t.device,
        t.rng,
        len(t.vocabs.tags),
        t.model.words.embedding_dim,
        t.opt,
        t.average,
    )


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_picks(s: Setup, count: int) -> list[np.ndarray]:
    """`count` of epoch 1's batches, evenly spaced over them by length, in epoch order.

    Sentences/s depends on sentence length: the first few batches of a shuffled epoch can be
    a token longer or shorter on average than the epoch, so a short run measures the
    batch sample as much as the code. An even spread by length matches the epoch's mix.
    """
    from . import batching

    order = batching.batch_indices(s.train.lengths, s.cfg.train.batch_size, s.rng)
    if count >= len(order):
        return [order[i % len(order)] for i in range(count)]
    by_length = sorted(range(len(order)), key=lambda i: float(s.train.lengths[order[i]].mean()))
    chosen = (
        sorted({by_length[round(k * (len(order) - 1) / (count - 1))] for k in range(count)})
        if count > 1
        else [0]
    )
    return [order[i] for i in chosen]


def _train_step(
    s: Setup, opt: torch.optim.Optimizer, index: np.ndarray, average: WeightAverage | None
) -> None:
    """One step as `training.fit` takes it."""
    from . import batching
    from .training.loop import update

    b = batching.make_batch(s.train, index).to(s.device)
    loss = s.model.loss(b)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    update(s.model, opt, s.cfg.train.clip, average)
    loss.item()


def _optimizer(s: Setup) -> tuple[torch.optim.Optimizer, WeightAverage | None]:
    """The optimizer, and the weight average when the config keeps one."""
    from . import training

    opt = training.make_optimizer(s.cfg, training.param_groups(s.cfg, s.model))
    ema = s.cfg.train.ema
    return opt, training.WeightAverage(s.model, ema) if ema else None


class Floor:
    """The bare recurrent core of a config's model: its encoder (the same class, so the same
    dense kernels, reversal and padding as the model) and a linear layer to the tags, trained
    with token cross-entropy by the config's optimizer and clipping. No embeddings, character
    encoder, dropout on the input, CRF or batch assembly: the inputs are ready tensors of the
    encoder's input width, which need a gradient as the model's token features do. A full
    step cannot be faster than this on the same batches."""

    def __init__(self, s: Setup, batches: Sequence[Any]):
        import torch
        from torch import nn

        from . import training
        from .model import Encoder

        m, enc = s.cfg.model, s.model.encoder
        gen = torch.Generator().manual_seed(s.cfg.train.seed)
        self.encoder = Encoder(
            m.cell,
            enc.in_dim,
            m.hidden_size,
            m.layers,
            m.bidirectional,
            m.dropout,
            m.locked_dropout,
        ).to(s.device)
        self.proj = nn.Linear(enc.out_dim, s.num_tags).to(s.device)
        self.module = nn.ModuleList([self.encoder, self.proj]).train()
        self.opt = training.make_optimizer(s.cfg, [{"params": list(self.module.parameters())}])
        self.clip = s.cfg.train.clip
        self.inputs: list[tuple[torch.Tensor, ...]] = []
        for b in batches:
            assert b.tags is not None
            shape = (*b.words.shape, enc.in_dim)
            x = torch.randn(shape, generator=gen)
            self.inputs.append(
                (
                    x.to(s.device).requires_grad_(),
                    b.lengths.to(s.device),
                    b.tags.to(s.device),
                    b.mask.to(s.device),
                )
            )

    def step(self, i: int) -> None:
        """One step on the `i`th batch's shapes."""
        import torch

        x, lengths, tags, mask = self.inputs[i]
        em = self.proj(self.encoder(x, lengths))
        ce = torch.nn.functional.cross_entropy(em.transpose(1, 2), tags, reduction="none")
        loss = (ce * mask).sum() / em.shape[0]
        self.opt.zero_grad(set_to_none=True)
        x.grad = None
        loss.backward()
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.module.parameters(), self.clip)
        self.opt.step()
        loss.item()


def bench_train(s: Setup, plan: Plan) -> dict[str, Any]:
    """Full training steps and the floor's (`Floor`) over the same batches, their
    repetitions interleaved so that a slower spell of the machine slows both."""
    import numpy as np

    from . import batching
    from .model import char_positions

    timed = training_picks(s, plan.train_batches)
    warm = [timed[i % len(timed)] for i in range(plan.warmup)]  # untimed extra steps
    batches = [batching.make_batch(s.train, i) for i in timed]
    tokens = sum(b.num_tokens for b in batches)
    sentences = int(sum(s.train_units[i].sum() for i in timed))
    floor = Floor(s, batches)
    s.model.train()
    opt, average = s.opt, s.average
    for n, index in enumerate(warm):
        _train_step(s, opt, index, average)
        floor.step(n % len(timed))
    times, floor_times = [], []
    for _ in range(plan.train_reps):
        _sync(s.device)
        t0 = time.perf_counter()
        for index in timed:
            _train_step(s, opt, index, average)
        _sync(s.device)
        times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i in range(len(timed)):
            floor.step(i)
        _sync(s.device)
        floor_times.append(time.perf_counter() - t0)
    seconds = statistics.median(times)
    floor_seconds = statistics.median(floor_times)
    return {
        "train_sentences_per_s": sentences / seconds,
        "train_tokens_per_s": tokens / seconds,
        "train_step_ms": 1000 * seconds / len(timed),
        "floor_sentences_per_s": sentences / floor_seconds,
        "floor_step_ms": 1000 * floor_seconds / len(timed),
        "train_floor_fraction": statistics.median(
            f / t for f, t in zip(floor_times, times, strict=True)
        ),
        "train_timed_tokens": tokens,
        "char_positions_per_token": char_positions(batches, s.cfg.model.char_encoder),
        "char_width_mean": float(np.mean([b.chars.shape[1] for b in batches])),
        "char_longest_mean": float(np.mean([int(b.char_lengths.max()) for b in batches])),
    }


def _decode(s: Setup, data: Encoded, index: np.ndarray) -> int:
    """Tag one batch as evaluation does (to the device and back); returns its token count."""
    import torch

    from . import batching

    b = batching.make_batch(data, index)
    with torch.inference_mode():
        s.model.decode(b.to(s.device)).cpu()
    return b.num_tokens


def bench_latency(s: Setup, plan: Plan, threads: int | None = None) -> dict[str, Any]:
    """Batch 1 on an evenly spaced dev sample: per-sentence latency, and its throughput;
    with `threads`, at that many torch threads (restored after)."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _latency(s, plan)
    finally:
        torch.set_num_threads(before)


def _latency(s: Setup, plan: Plan) -> dict[str, Any]:
    import numpy as np

    s.model.eval()
    n = min(plan.latency_sentences, len(s.dev))
    sample = np.unique(np.linspace(0, len(s.dev) - 1, n).round().astype(np.int64))
    for i in sample[: min(5, len(sample))]:
        _decode(s, s.dev, np.array([i]))
    times, tokens = [], 0
    for i in sample:
        t0 = time.perf_counter()
        tokens += _decode(s, s.dev, np.array([i]))
        times.append(time.perf_counter() - t0)
    ms = 1000 * np.array(times)
    return {
        "latency_ms_batch1": {
            "median": float(np.median(ms)),
            "p90": float(np.percentile(ms, 90)),
            "sentences": len(sample),
        },
        "tokens_per_s": tokens / float(np.sum(times)),
    }


def bench_infer(s: Setup, batch_size: int, reps: int) -> dict[str, Any]:
    """Tokens/s over the whole dev set at one batch size (median of `reps` passes)."""
    from . import batching
    from .model import char_positions

    s.model.eval()
    groups = batching.batch_indices(s.dev.lengths, batch_size)
    _decode(s, s.dev, groups[-1])  # the longest batch: allocations before timing
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        for index in groups:
            _decode(s, s.dev, index)
        times.append(time.perf_counter() - t0)
    batches = [batching.make_batch(s.dev, i) for i in groups]
    return {
        "tokens_per_s": int(s.dev.lengths.sum()) / statistics.median(times),
        "char_positions_per_token": char_positions(batches, s.cfg.model.char_encoder),
    }


# --- where a training step's time goes -------------------------------------------------------


class _Clock:
    def __init__(self, device: torch.device, totals: dict[str, float]):
        self.device, self.totals = device, totals
        _sync(device)
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        _sync(self.device)
        now = time.perf_counter()
        self.totals[name] += now - self.last
        self.last = now


def profile_train_step(s: Setup, plan: Plan) -> dict[str, float]:
    """Milliseconds per training batch of each part, forward and backward.

    The parts are the model's own stages (`RNNTagger.char_features`, `token_features`, the
    encoder, `readout`, `output_loss`, `lm_loss`), so what is profiled is what `loss` runs,
    word dropout, singleton UNK, pretrained dropout, trust and the auxiliary LM included. The
    autograd graph is cut at the stages' boundaries (detached leaves) and backward is run
    stage by stage, so each is timed in place at its real shapes. Parts: batch (assembly, to
    the device), char, embed, rnn, proj, crf or softmax (the output loss), lm (with
    model.lm_weight), optimizer (clipping, step, weight average, as `training` does it).
    """
    import torch

    from . import batching
    from .training.loop import update

    m = s.model
    m.train()
    opt, average = _optimizer(s)
    picks = training_picks(s, plan.warmup + plan.profile_batches)
    totals: dict[str, float] = defaultdict(float)
    head = "crf" if m.crf is not None else "softmax"

    def cut(x: torch.Tensor) -> torch.Tensor:
        return x.detach().requires_grad_()

    for n, index in enumerate(picks):
        if n == plan.warmup:
            totals.clear()
        clock = _Clock(s.device, totals)
        b = batching.make_batch(s.train, index).to(s.device)
        clock.lap("batch")
        per_type = m.char_features(b)
        per_type_in = cut(per_type) if per_type is not None else None
        if per_type is not None:
            clock.lap("char_fwd")
        x = m.token_features(b, per_type_in)
        x_in = cut(x)
        clock.lap("embed_fwd")
        states = m.encoder.layer_states(x_in, b.lengths)
        h_in = cut(states[-1])
        clock.lap("rnn_fwd")
        em = m.readout(h_in, b)
        em_in = cut(em)
        clock.lap("proj_fwd")
        loss = m.output_loss(em_in, b) / em.shape[0]
        clock.lap(f"{head}_fwd")
        first_in = lm = None
        if m.lm is not None:
            first_in = cut(states[0])
            lm = m.lm_loss(first_in, b) / em.shape[0]
            clock.lap("lm_fwd")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        clock.lap(f"{head}_bwd")
        if lm is not None:
            lm.backward()
            clock.lap("lm_bwd")
        em.backward(em_in.grad)
        clock.lap("proj_bwd")
        outs, grads = [states[-1]], [h_in.grad]
        if first_in is not None:
            outs.append(states[0])
            grads.append(first_in.grad)
        torch.autograd.backward(outs, grads)
        clock.lap("rnn_bwd")
        if x.requires_grad:
            x.backward(x_in.grad)
        clock.lap("embed_bwd")
        if per_type is not None and per_type_in is not None:
            per_type.backward(per_type_in.grad)
            clock.lap("char_bwd")
        update(m, opt, s.cfg.train.clip, average)
        loss.item()
        clock.lap("optimizer")
    count = max(len(picks) - plan.warmup, 1)
    return {name: 1000 * t / count for name, t in totals.items()}


# --- the whole run -----------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(cfg: Config, plan: Plan, device: torch.device, profile: bool = False) -> dict[str, Any]:
    """Every measurement, as one JSON-able dict (see the module docstring)."""
    import torch

    from .model import model_flops

    s = prepare(cfg, device)
    matmul = matmul_gflops(plan.matmul_size, plan.matmul_reps, device)
    tr = bench_train(s, plan)
    by_batch: dict[str, float] = {}
    infer_chars = 0.0
    latency: dict[str, Any] = {}
    # a sentence at a time, as a server thread tags it: one torch thread, on the CPU
    latency_one = bench_latency(s, plan, 1)["latency_ms_batch1"] if device.type == "cpu" else {}
    for bs in plan.infer_batch_sizes:
        if bs == 1:
            lat = bench_latency(s, plan)
            latency = lat["latency_ms_batch1"]
            by_batch["1"] = lat["tokens_per_s"]
        else:
            res = bench_infer(s, bs, plan.infer_reps)
            by_batch[str(bs)] = res["tokens_per_s"]
            infer_chars = res["char_positions_per_token"]
    largest = str(max(plan.infer_batch_sizes))
    m = cfg.model
    train_flops = model_flops(m, s.word_dim, s.num_tags, tr["char_positions_per_token"])
    infer_flops = model_flops(m, s.word_dim, s.num_tags, infer_chars)
    result: dict[str, Any] = {
        "train_sentences_per_s": tr["train_sentences_per_s"],
        "train_tokens_per_s": tr["train_tokens_per_s"],
        "train_step_ms": tr["train_step_ms"],
        "floor_sentences_per_s": tr["floor_sentences_per_s"],
        "floor_step_ms": tr["floor_step_ms"],
        "train_floor_fraction": tr["train_floor_fraction"],
        "infer_tokens_per_s": by_batch[largest],
        "infer_batch_size": int(largest),
        "infer_tokens_per_s_by_batch": by_batch,
        "latency_ms_batch1": latency,
        "latency_ms_batch1_one_thread": latency_one,
        "matmul_gflops": matmul,
        "train_flops_per_token": train_flops["train"],
        "infer_flops_per_token": infer_flops["forward"],
        "flops_per_token_forward_by_part": {
            k: train_flops[k] for k in ("char", "rnn", "proj", "output")
        },
        "utilization": tr["train_tokens_per_s"] * train_flops["train"] / (matmul * 1e9),
        "infer_utilization": by_batch[largest] * infer_flops["forward"] / (matmul * 1e9),
        "char_positions_per_token": tr["char_positions_per_token"],
        "char_width_mean": tr["char_width_mean"],
        "char_longest_mean": tr["char_longest_mean"],
        "peak_rss_mb": 0.0,
        "config": {
            "cell": m.cell,
            "hidden_size": m.hidden_size,
            "layers": m.layers,
            "bidirectional": m.bidirectional,
            "char_encoder": m.char_encoder,
            "output": m.output,
            "embeddings": m.embeddings,
            "word_dim": s.word_dim,
            "num_tags": s.num_tags,
            "batch_size": cfg.train.batch_size,
            "context": cfg.data.context,
        },
        "plan": {
            "warmup": plan.warmup,
            "train_batches": plan.train_batches,
            "train_reps": plan.train_reps,
            "infer_reps": plan.infer_reps,
            "matmul_size": plan.matmul_size,
        },
        "threads": torch.get_num_threads(),
        "device": str(device),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "cpu_model": cpu_model(),
    }
    if device.type == "cuda":
        result["gpu_model"] = torch.cuda.get_device_name(device)
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    if profile:
        result["train_step_ms_by_part"] = profile_train_step(s, plan)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


# --- command line -----------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", default=DEFAULT_CONFIG, help=f"TOML config (default {DEFAULT_CONFIG})"
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override a config value (repeatable)",
    )
    p.add_argument("--quick", action="store_true", help="fewer batches: under a minute")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: the config's)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: the config's)")
    p.add_argument("--batch-size", type=int, help="training batch size (default: the config's)")
    p.add_argument(
        "--profile", action="store_true", help="also split a training step's time by model part"
    )


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """`rnner bench`, for cli.py's table of commands."""
    p = subparsers.add_parser(
        "bench", help="measure training and inference speed", description=DESCRIPTION
    )
    add_arguments(p)
    p.set_defaults(func=cmd_bench)
    return p


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from . import training

    overrides = list(args.set or [])
    if args.batch_size is not None:
        overrides.append(f"train.batch_size={args.batch_size}")
    if args.device:
        overrides.append(f"train.device={json.dumps(args.device)}")
    if args.threads is not None:  # set by `training.prepare`, as `rnner train` sets them
        if args.threads < 0:
            raise ConfigError("--threads", "must be positive")
        overrides.append(f"train.threads={args.threads}")
    cfg = Config.load(args.config, overrides)
    plan = QUICK if args.quick else Plan()
    device = training.pick_device(cfg.train.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device", f"{device} asked for, but CUDA is not available")
    result = run(cfg, plan, device, profile=args.profile)
    if args.json:
        print(json.dumps(result))
    else:
        from .bench_text import format_table

        print(format_table(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m rnner.bench ...`: the same as `rnner bench ...`."""
    from .cli import main as rnner

    return rnner(["bench", *(sys.argv[1:] if argv is None else argv)])
