"""What the [train] keys do to training, watched through `rnner train` itself.

Torch's global optimizer hooks see every step the training loop takes, whatever module it
lives in: the optimizer's class, its hyperparameters and learning rates per parameter group,
the gradient norm it is handed (after clipping), and the step it takes, which must be the one
torch's reference optimizer takes on the same parameters and gradients. Schedules are read
from log.jsonl against hand-computed learning rates.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import GOOD, tiny_sections

from rnner.cli import main

WORD_DIM = 16  # TINY's model.word_dim: the word embedding is the only [V, 16] parameter
NO_ENTITIES = "EU NNP I-NP O\nrejects VBZ I-VP O\n\nPeter NNP I-NP O\n"


class Steps:
    """Every optimizer step of a training run: the optimizer, learning rates per group,
    and the norm of the gradients it was given; for the first step, the parameters and
    gradients before it and the parameters after it."""

    def __init__(self) -> None:
        self.optimizers: list[torch.optim.Optimizer] = []
        self.lrs: list[list[float]] = []
        self.norms: list[float] = []
        self.before: list[tuple[list[torch.Tensor], list[torch.Tensor]]] = []
        self.after: list[list[torch.Tensor]] = []

    def pre(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        params = [p for g in opt.param_groups for p in g["params"]]
        self.optimizers.append(opt)
        self.lrs.append([g["lr"] for g in opt.param_groups])
        grads = [p.grad for p in params if p.grad is not None]
        self.norms.append(
            float(
                torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
            )
        )
        if len(self.optimizers) == 1:
            self.before.append(
                (
                    [p.detach().clone() for p in params],
                    [p.grad.clone() if p.grad is not None else None for p in params],
                )
            )

    def post(self, opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if len(self.optimizers) == 1 and not self.after:
            self.after.append([p.detach().clone() for g in opt.param_groups for p in g["params"]])


@pytest.fixture
def steps() -> Iterator[Steps]:
    from torch.optim.optimizer import (
        register_optimizer_step_post_hook,
        register_optimizer_step_pre_hook,
    )

    seen = Steps()
    handles = [
        register_optimizer_step_pre_hook(seen.pre),
        register_optimizer_step_post_hook(seen.post),
    ]
    yield seen
    for h in handles:
        h.remove()


def train(
    capsys: pytest.CaptureFixture[str], config: Path, run: Path, *sets: str, dev: Path = GOOD
) -> list[dict]:
    argv = [
        "train",
        str(config),
        "--train",
        str(GOOD),
        "--dev",
        str(dev),
        "--test",
        str(GOOD),
        "--output",
        str(run),
        "--quiet",
    ]
    for item in sets:
        argv += ["--set", item]
    code = main(argv)
    _, err = capsys.readouterr()
    assert (code, err) == (0, "")
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


# optimizer key -> (torch class, the keyword arguments the config must reach it with)
OPTIMIZERS = {
    "adamw": (torch.optim.AdamW, {"weight_decay": 0.1}),
    "nadam": (torch.optim.NAdam, {"weight_decay": 0.1}),
    "rmsprop": (torch.optim.RMSprop, {"weight_decay": 0.1, "momentum": 0.8}),
    "adagrad": (torch.optim.Adagrad, {"weight_decay": 0.1}),
    "adam": (torch.optim.Adam, {"weight_decay": 0.1}),
    "sgd": (torch.optim.SGD, {"weight_decay": 0.1, "momentum": 0.8, "nesterov": True}),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_takes_the_reference_step_with_the_configured_hyperparameters(
    name, steps, capsys, write_config, tmp_path
):
    cls, kwargs = OPTIMIZERS[name]
    config = write_config(
        train={
            "optimizer": name,
            "lr": 0.05,
            "weight_decay": 0.1,
            "momentum": 0.8,
            "nesterov": name == "sgd",
            "embedding_lr_scale": 0.25,
            "clip": 0.0,
            "epochs": 1,
        }
    )
    train(capsys, config, tmp_path / "run")
    opt = steps.optimizers[0]
    assert type(opt) is cls
    for group in opt.param_groups:
        for key, value in kwargs.items():
            assert group[key] == value, key
    # Two groups: the word embedding at a quarter of the rate, everything else.
    rest, emb = opt.param_groups
    assert [tuple(p.shape)[1:] for p in emb["params"]] == [(WORD_DIM,)]
    assert (rest["lr"], emb["lr"]) == (0.05, 0.05 * 0.25)

    # The first step, redone by torch's own optimizer on copies of the same tensors.
    params, grads = steps.before[0]
    copies = [p.clone().requires_grad_(True) for p in params]
    for c, g in zip(copies, grads, strict=True):
        c.grad = g
    n = len(rest["params"])
    reference = cls(
        [{"params": copies[:n], "lr": 0.05}, {"params": copies[n:], "lr": 0.05 * 0.25}], **kwargs
    )
    reference.step()
    moved = 0
    for got, want, old in zip(steps.after[0], copies, params, strict=True):
        torch.testing.assert_close(got, want.detach(), rtol=1e-5, atol=1e-7)
        moved += int(not torch.equal(got, old))
    assert moved > len(params) // 2


def test_clipping_bounds_the_gradient_norm_the_optimizer_sees(
    steps, capsys, write_config, tmp_path
):
    config = write_config(train={"optimizer": "sgd", "lr": 0.1, "epochs": 2, "batch_size": 1})
    train(capsys, config, tmp_path / "free", "train.clip=0")
    free = list(steps.norms)
    assert max(free) > 2.0  # without clipping, some batch's gradient is larger than 1
    steps.norms.clear()
    train(capsys, config, tmp_path / "clipped", "train.clip=1.0")
    assert len(steps.norms) == len(free)
    assert all(n <= 1.0 + 1e-5 for n in steps.norms)
    assert max(steps.norms) == pytest.approx(1.0, rel=1e-5)  # clipped down to the bound
    # The first step sees the same gradient in both runs: scaled to norm 1 only if larger.
    assert steps.norms[0] == pytest.approx(min(free[0], 1.0), rel=1e-5)


def _lrs(log: list[dict]) -> list[float]:
    return [r["lr"] for r in log]


@pytest.mark.parametrize(
    ("schedule", "sets", "expected"),
    [
        ("constant", [], [0.1] * 5),
        # lr / (1 + 0.5 e) after epoch e
        (
            "inverse_time",
            ["train.lr_decay=0.5"],
            [0.1 / 1.5, 0.1 / 2, 0.1 / 2.5, 0.1 / 3, 0.1 / 3.5],
        ),
        # halved every 2 epochs
        ("step", ["train.step_size=2", "train.gamma=0.5"], [0.1, 0.05, 0.05, 0.025, 0.025]),
        # half a cosine over the 5 epochs, to 0
        ("cosine", [], [0.1 * (1 + math.cos(math.pi * e / 5)) / 2 for e in range(1, 6)]),
    ],
)
def test_schedule_sets_the_learning_rate_of_every_epoch(
    schedule, sets, expected, steps, capsys, write_config, tmp_path
):
    config = write_config(
        train={
            "optimizer": "sgd",
            "lr": 0.1,
            "epochs": 5,
            "schedule": schedule,
            "embedding_lr_scale": 0.5,
        }
    )
    log = train(capsys, config, tmp_path / "run", *sets)
    assert _lrs(log) == pytest.approx(expected, rel=1e-12)
    # Each epoch trains at the rate set after the one before; the embeddings at half of it.
    during = sorted({lr for lrs in steps.lrs for lr in lrs}, reverse=True)
    want = sorted({x for lr in [0.1, *expected[:-1]] for x in (lr, lr * 0.5)}, reverse=True)
    assert during == pytest.approx(want, rel=1e-12)
    assert all(emb == pytest.approx(rest * 0.5, rel=1e-12) for rest, emb in steps.lrs)


def test_plateau_schedule_cuts_the_rate_after_patience_epochs_without_gain(
    capsys, tmp_path, write_config
):
    # Dev without entities: dev F1 is 0 at every epoch, so only epoch 1 counts as a gain.
    dev = tmp_path / "dev.txt"
    dev.write_text(NO_ENTITIES, encoding="utf-8")
    config = write_config(
        train={
            "optimizer": "sgd",
            "lr": 0.1,
            "epochs": 6,
            "schedule": "plateau",
            "gamma": 0.5,
            "patience": 0,
        }
    )
    log = train(capsys, config, tmp_path / "run", dev=dev)
    assert [r["dev_f1"] for r in log] == [0.0] * 6
    # plateau patience max(1, train.patience // 3) = 1: cut when 2 epochs in a row stall
    assert _lrs(log) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025], rel=1e-12)
    log = train(capsys, config, tmp_path / "run6", "train.patience=6", dev=dev)
    # patience 6 -> plateau patience 2 (and early stopping would stop at epoch 7)
    assert _lrs(log) == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05], rel=1e-12)


def _replaced(words: torch.Tensor, seen: torch.Tensor, mask: torch.Tensor) -> tuple[int, int]:
    """(tokens the network read as UNK that were not UNK, real tokens)."""
    return int(((seen == 1) & (words != 1) & mask).sum()), int(mask.sum())


def test_word_dropout_replaces_its_rate_of_training_tokens_by_unk_and_none_in_eval():
    from rnner import batching
    from rnner.config import Config
    from rnner.model import RNNTagger
    from rnner.vocab import build_vocabs

    gen = torch.Generator().manual_seed(0)
    words = [f"w{i}" for i in range(50)]
    sents = [[words[int(i)] for i in torch.randint(50, (20,), generator=gen)] for _ in range(100)]
    vocabs = build_vocabs(sents, [["O"] * 20] * 100)
    cfg = Config.from_dict(tiny_sections(model={"word_dropout": 0.25}))
    model = RNNTagger(cfg.model, len(vocabs.words), len(vocabs.chars), len(vocabs.tags), 16)
    seen: list[torch.Tensor] = []
    model.words.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    batch = batching.make_batch(batching.encode(sents, vocabs), torch.arange(100).numpy())

    torch.manual_seed(3)
    model.train()
    model.emissions(batch)
    replaced, real = _replaced(batch.words, seen[-1], batch.mask)
    assert real == 2000
    # Binomial(2000, 0.25): mean 500, sd 19.4; a seed that missed this by 5 sd would be news.
    assert 403 < replaced < 597
    assert torch.equal(seen[-1][~batch.mask], batch.words[~batch.mask])  # padding stays

    model.eval()
    model.emissions(batch)
    assert torch.equal(seen[-1], batch.words)
