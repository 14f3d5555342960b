"""Distillation: soft targets are the teachers' mean marginals, computed once and cached;
teachers that cannot teach are refused by run directory; weight 0 is plain training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import GOOD, tiny_sections
from safetensors.numpy import load as load_safetensors

from rnner.cli import main
from rnner.config import Config
from rnner.crf import CRF
from rnner.errors import ConfigError
from rnner.pipeline import encode_split, load_corpus, sentence_marginals
from rnner.runs import load_run
from rnner.training import distill, fit

# Six sentences with every type; dev and test are GOOD (other text, the same types).
TRAIN = GOOD.read_text(encoding="utf-8") + (
    "\nParis NNP I-NP B-LOC\nis VBZ I-VP O\nin IN I-PP O\nFrance NNP I-NP B-LOC\n"
    "\nFiat NNP I-NP B-ORG\nhired VBD I-VP O\nJohn NNP I-NP B-PER\nSmith NNP I-NP I-PER\n"
    "\nFrench JJ I-NP B-MISC\nwine NN I-NP O\n"
)


def _config(train: Path, cache: Path, model: dict | None = None, **train_keys) -> Config:
    data = {"train": str(train), "dev": str(GOOD), "test": str(GOOD)}
    keys = {"distill_cache": str(cache), **train_keys}
    return Config.from_dict(tiny_sections(data=data, model=model or {}, train=keys))


@pytest.fixture(scope="module")
def teachers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """Two teachers trained on TRAIN (seeds 1 and 2); the training file's path."""
    root = tmp_path_factory.mktemp("teachers")
    train = root / "train.txt"
    train.write_text(TRAIN, encoding="utf-8")
    runs = []
    for seed in (1, 2):
        fit(_config(train, root / "unused", seed=seed), root / f"t{seed}", progress=False)
        runs.append(root / f"t{seed}")
    return train, runs


def test_soft_targets_are_the_mean_of_the_teachers_marginals(teachers, tmp_path):
    train, runs = teachers
    cfg = _config(train, tmp_path / "cache", teachers=[str(r) for r in runs])
    corpus = load_corpus(cfg)
    names = json.loads((runs[0] / "vocab.json").read_text())["tags"]["items"]
    vocabs = load_run(runs[0])[1]
    rows, facts = distill.soft_targets(cfg, corpus, vocabs, torch.device("cpu"))
    each = []
    for run in runs:
        model, v, tcfg, _ = load_run(run)
        split = encode_split(corpus.train, v, tcfg)
        each.append(sentence_marginals(model, split, split.batches(8), torch.device("cpu")))
    assert len(rows) == len(corpus.train) == 6
    for i, row in enumerate(rows):
        assert row.shape == (len(corpus.train[i]), len(names))
        np.testing.assert_allclose(row, (each[0][i] + each[1][i]) / 2, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(row.sum(1), 1.0, rtol=1e-5)
    stored = load_safetensors(Path(facts["cache"]).read_bytes())
    assert stored["lengths"].tolist() == [5, 2, 2, 4, 4, 2]
    assert facts["computed"] is True


def _distill(teachers: list[Path], cfg_path: Path, out: Path, *sets: str) -> int:
    argv = ["distill", *map(str, teachers), "--config", str(cfg_path), "--output", str(out)]
    for item in sets:
        argv += ["--set", item]
    return main([*argv, "--quiet"])


def _write(path: Path, cfg: Config) -> Path:
    from conftest import to_toml

    raw = cfg.to_dict()
    raw["train"].pop("teachers")
    path.write_text(to_toml(raw), encoding="utf-8")
    return path


def test_a_second_run_reads_the_cache_and_computes_nothing(teachers, tmp_path, monkeypatch):
    train, runs = teachers
    cfg_path = _write(tmp_path / "student.toml", _config(train, tmp_path / "cache"))
    assert _distill(runs, cfg_path, tmp_path / "s1") == 0
    first = json.loads((tmp_path / "s1" / "run.json").read_text())["distill"]
    assert first["computed"] is True
    cache = Path(first["cache"])
    stamp = cache.stat().st_mtime_ns

    def refuse(*args, **kwargs):
        raise AssertionError("the teachers' marginals were computed again")

    monkeypatch.setattr(distill, "mean_marginals", refuse)
    # the teachers in the other order, another seed: the same targets
    assert _distill(runs[::-1], cfg_path, tmp_path / "s2", "train.seed=3") == 0
    second = json.loads((tmp_path / "s2" / "run.json").read_text())["distill"]
    assert second["computed"] is False and second["cache"] == str(cache)
    assert cache.stat().st_mtime_ns == stamp
    # another training text is another key: computed (and refused here)
    with pytest.raises(AssertionError, match="computed again"):
        _distill(runs, cfg_path, tmp_path / "s3", "data.max_sentences=4")


def test_weight_zero_trains_exactly_as_plain_training(teachers, tmp_path):
    train, runs = teachers
    names = [str(r) for r in runs]
    # dropout draws from torch's generator, which loading the teachers must leave alone
    model = {"dropout": 0.5, "word_dropout": 0.1}

    def run(name: str, **keys) -> None:
        cfg = _config(train, tmp_path / name / "cache", model, epochs=3, **keys)
        fit(cfg, tmp_path / name, progress=False)

    run("plain")
    run("half", teachers=names)
    run("zero", teachers=names, distill_weight=0.0)

    def log(run: str) -> list[tuple[float, float]]:
        lines = (tmp_path / run / "log.jsonl").read_text().splitlines()
        return [(r["train_loss"], r["dev_f1"]) for r in map(json.loads, lines)]

    assert log("zero") == log("plain")
    weights = [(tmp_path / r / "model.safetensors").read_bytes() for r in ("zero", "plain")]
    assert weights[0] == weights[1]
    assert log("half") != log("plain")  # weight 0.5 does change training


@pytest.mark.parametrize(
    ("teacher_keys", "says"),
    [
        ({"scheme": "IOB2"}, "the teacher tags in IOB2, the student in BIOES"),
        ({"train_on_dev": True}, "the teacher was trained on dev (data.train_on_dev = true)"),
        ({"train": "DEV"}, "the teacher was trained on {dev}, the student's dev file"),
        ({"train": "DEV_COPY"}, "the teacher was trained on {copy}, the student's dev file"),
        ({"train": "NO_MISC"}, "tag set is not the student's (teacher only: -; student only"),
    ],
)
def test_teachers_that_cannot_teach_are_refused_by_run_directory(
    teachers, tmp_path, capsys, teacher_keys, says
):
    train, _ = teachers
    copy = tmp_path / "dev_copy.txt"
    copy.write_text(GOOD.read_text(encoding="utf-8"), encoding="utf-8")
    no_misc = tmp_path / "no_misc.txt"
    no_misc.write_text(TRAIN.replace("B-MISC", "O"), encoding="utf-8")
    paths = {"DEV": str(GOOD), "DEV_COPY": str(copy), "NO_MISC": str(no_misc)}
    data = {"train": str(train), "dev": str(GOOD), "test": str(GOOD)}
    for key, value in teacher_keys.items():
        data[key] = paths.get(value, value) if isinstance(value, str) else value
    if teacher_keys.get("train") == "NO_MISC":  # its dev and test must not have MISC either
        data["dev"] = data["test"] = str(no_misc)
    train_keys = {"select": "last"} if teacher_keys.get("train_on_dev") else {}
    teacher = tmp_path / "teacher"
    fit(Config.from_dict(tiny_sections(data=data, train=train_keys)), teacher, progress=False)
    cfg_path = _write(tmp_path / "student.toml", _config(train, tmp_path / "cache"))
    assert _distill([teacher], cfg_path, tmp_path / "s") == 2
    err = capsys.readouterr().err.strip()
    assert err == err.splitlines()[0]  # one line
    assert err.startswith(f"{teacher}: ")
    assert says.format(dev=GOOD, copy=copy) in err
    assert not (tmp_path / "s").exists()


def test_distillation_refuses_mention_augment_and_a_weight_out_of_range():
    with pytest.raises(ConfigError, match="train.teachers: cannot be combined"):
        Config.from_dict({"train": {"teachers": ["t"]}, "data": {"mention_augment": 0.1}})
    with pytest.raises(ConfigError, match="train.distill_weight"):
        Config.from_dict({"train": {"distill_weight": 1.5}})


def test_log_marginals_are_the_marginals_and_their_gradient_is_exact():
    torch.manual_seed(0)
    crf = CRF(4, allowed=[(i, j) for i in range(4) for j in range(4) if (i, j) != (0, 3)])
    crf = crf.double()
    with torch.no_grad():
        crf.transitions.normal_()
    em = torch.randn(2, 5, 4, dtype=torch.double, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    log_p = crf.log_marginals(em, mask)
    # the marginals are the gradient of log Z, which the forward algorithm alone computes
    (expected,) = torch.autograd.grad(crf.log_partition(em, mask).sum(), em)
    torch.testing.assert_close(log_p.exp() * mask.unsqueeze(2), expected)
    torch.testing.assert_close(crf.marginals(em, mask), expected)
    soft = torch.rand(2, 5, 4, dtype=torch.double).softmax(2)

    def loss(e: torch.Tensor) -> torch.Tensor:
        return -(soft * crf.log_marginals(e, mask) * mask.unsqueeze(2)).sum()

    assert torch.autograd.gradcheck(loss, (em,))
