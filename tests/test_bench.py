"""The benchmark on a tiny synthetic corpus: every number it reports exists, is positive and
consistent with the others; the FLOPs formula matches counts done by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import tiny_sections, to_toml

from rnner import batching, bench
from rnner.config import Config, ModelConfig
from rnner.model import char_positions, model_flops

PLAN = bench.Plan(
    warmup=1,
    train_batches=3,
    train_reps=2,
    infer_batch_sizes=(1, 16),
    infer_reps=1,
    latency_sentences=5,
    matmul_size=64,
    matmul_reps=2,
    profile_batches=2,
)

NAMES = ["Peter", "Blackburn", "Brussels", "EU", "Germany", "Reuters"]
TYPES = ["PER", "PER", "LOC", "ORG", "LOC", "ORG"]


def write_corpus(path: Path, sentences: int = 40) -> Path:
    """A CoNLL file (IOB2) of sentences 2..13 tokens long, some holding an entity."""
    lines = []
    for i in range(sentences):
        if i % 10 == 0:
            lines += ["-DOCSTART- -X- -X- O", ""]
        for j in range(2 + i % 12):
            if j == 1 and i % 3:
                k = i % len(NAMES)
                lines.append(f"{NAMES[k]} NNP I-NP B-{TYPES[k]}")
            else:
                lines.append(f"word{(i * 7 + j) % 23} NN I-NP O")
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    corpus = str(write_corpus(tmp_path / "corpus.txt"))
    path = tmp_path / "tiny.toml"
    path.write_text(
        to_toml(tiny_sections(data={"train": corpus, "dev": corpus, "test": corpus})),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def result(tiny_config: Path) -> dict[str, Any]:
    torch.set_num_threads(1)
    return bench.run(Config.load(tiny_config), PLAN, torch.device("cpu"), profile=True)


def _positive(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and x > 0


def test_run_reports_every_number_positive(result: dict[str, Any]) -> None:
    for key in (
        "train_sentences_per_s",
        "train_tokens_per_s",
        "infer_tokens_per_s",
        "matmul_gflops",
        "utilization",
        "infer_utilization",
        "peak_rss_mb",
        "train_flops_per_token",
        "infer_flops_per_token",
        "char_positions_per_token",
    ):
        assert _positive(result[key]), key
    assert set(result["infer_tokens_per_s_by_batch"]) == {"1", "16"}
    assert all(_positive(v) for v in result["infer_tokens_per_s_by_batch"].values())
    assert result["infer_tokens_per_s"] == result["infer_tokens_per_s_by_batch"]["16"]
    lat = result["latency_ms_batch1"]
    assert _positive(lat["median"]) and lat["p90"] >= lat["median"]
    assert lat["sentences"] == 5
    assert result["config"]["hidden_size"] == 16 and result["config"]["batch_size"] == 10
    assert result["threads"] == 1 and result["device"] == "cpu"
    assert result["torch_version"] == torch.__version__ and result["cpu_model"]
    json.dumps(result)  # JSON-able as it stands


def test_numbers_agree_with_each_other(result: dict[str, Any]) -> None:
    # 3 timed batches of 10 sentences each, so the two rates differ by the mean length.
    ratio = result["train_tokens_per_s"] / result["train_sentences_per_s"]
    assert 2 <= ratio <= 13
    parts = result["flops_per_token_forward_by_part"]
    assert result["train_flops_per_token"] == pytest.approx(3 * sum(parts.values()))


def test_utilization_is_achieved_flops_over_the_matmul_rate(
    tiny_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fixed measurements in, the utilizations worked out by hand out."""
    monkeypatch.setattr(bench, "matmul_gflops", lambda *a: 2.0)
    monkeypatch.setattr(
        bench,
        "bench_train",
        lambda s, plan: {
            "train_sentences_per_s": 100.0,
            "train_tokens_per_s": 1000.0,
            "train_step_ms": 5.0,
            "floor_sentences_per_s": 200.0,
            "floor_step_ms": 2.5,
            "train_floor_fraction": 0.5,
            "char_positions_per_token": 2.0,
            "char_width_mean": 4.0,
            "char_longest_mean": 4.0,
        },
    )
    monkeypatch.setattr(
        bench,
        "bench_latency",
        lambda s, plan, threads=None: {
            "latency_ms_batch1": {"median": 1.0, "p90": 2.0, "sentences": 5},
            "tokens_per_s": 500.0,
        },
    )
    monkeypatch.setattr(
        bench,
        "bench_infer",
        lambda s, bs, reps: {"tokens_per_s": 4000.0, "char_positions_per_token": 3.0},
    )
    r = bench.run(Config.load(tiny_config), PLAN, torch.device("cpu"))
    # The tiny corpus's entities are single words: its BIOES tags are O, S-PER, S-LOC, S-ORG.
    # Per token, forward: char CNN 2 positions * 2 * (8 * 8 * 3) = 768 (train), 1152 (infer:
    # 3 positions); BiLSTM 2 * 4 * (28 * 16 + 16 * 16) * 2 = 11264; projection 2 * 32 * 4
    # = 256; CRF 3 * 4 * 4 = 48. Training counts forward and backward as 3 forwards.
    assert r["train_flops_per_token"] == 3 * (768 + 11264 + 256 + 48) == 37008
    assert r["infer_flops_per_token"] == 1152 + 11264 + 256 + 48 == 12720
    # 1000 tokens/s * 37008 FLOP / 2 GFLOP/s; 4000 tokens/s * 12720 FLOP / 2 GFLOP/s
    assert r["utilization"] == pytest.approx(0.018504, rel=1e-12)
    assert r["infer_utilization"] == pytest.approx(0.02544, rel=1e-12)
    assert r["infer_tokens_per_s"] == 4000.0 and r["infer_tokens_per_s_by_batch"]["1"] == 500.0


def test_profile_covers_forward_and_backward_of_every_part(result: dict[str, Any]) -> None:
    by_part = result["train_step_ms_by_part"]
    for part in ("char", "embed", "rnn", "proj", "crf"):
        assert by_part[f"{part}_fwd"] > 0 and by_part[f"{part}_bwd"] > 0, part
    assert by_part["optimizer"] > 0 and by_part["batch"] > 0


def test_profile_and_flops_follow_repeat_pooling_and_weight_average(tiny_config: Path) -> None:
    torch.set_num_threads(1)
    cfg = Config.load(
        tiny_config, ["model.repeat_pooling=true", "train.ema=0.9", 'data.context="document"']
    )
    out = bench.run(cfg, PLAN, torch.device("cpu"), profile=True)
    assert out["train_step_ms_by_part"]["proj_bwd"] > 0
    plain = model_flops(Config.load(tiny_config).model, 50, 17, 0.0)
    pooled = model_flops(cfg.model, 50, 17, 0.0)
    assert pooled["proj"] == 2 * plain["proj"]


def test_training_batches_are_those_of_epoch_one(tiny_config: Path) -> None:
    """Same seed and bucketing as `train.fit`: batches hold sentences of similar length."""
    s = bench.prepare(Config.load(tiny_config), torch.device("cpu"))
    picks = bench.training_picks(s, 6)
    assert [len(p) for p in picks[:4]] == [10, 10, 10, 10]  # 40 sentences, then cycled
    assert [list(p) for p in picks[4:]] == [list(p) for p in picks[:2]]
    spans = [int(s.train.lengths[p].max() - s.train.lengths[p].min()) for p in picks[:4]]
    assert max(spans) <= 4  # length-bucketed, not random


def test_flops_for_a_tiny_bilstm_cnn_crf() -> None:
    m = ModelConfig(
        embeddings="random",
        word_dim=16,
        casing_dim=4,
        char_encoder="cnn",
        char_dim=8,
        char_hidden=8,
        char_kernel=3,
        cell="lstm",
        hidden_size=16,
        bidirectional=True,
        layers=1,
        output="crf",
    )
    f = model_flops(m, word_dim=16, num_tags=5, char_positions_per_token=2.0)
    # char CNN: 2 positions * 2 * (8 dims * 8 filters * 3 wide) = 768
    assert f["char"] == 768
    # LSTM input 16 + 4 + 8 = 28; 2 directions * 4 gates * (28*16 + 16*16) * 2 = 11264
    assert f["rnn"] == 11264
    assert f["proj"] == 2 * 32 * 5
    assert f["output"] == 3 * 5 * 5
    assert f["forward"] == 768 + 11264 + 320 + 75
    assert f["train"] == 3 * 12427


def test_flops_for_stacked_gru_and_softmax_without_chars() -> None:
    m = ModelConfig(
        char_encoder="none",
        casing_dim=0,
        cell="gru",
        hidden_size=6,
        bidirectional=False,
        layers=2,
        output="softmax",
    )
    f = model_flops(m, word_dim=10, num_tags=3, char_positions_per_token=7.0)
    assert f["char"] == 0
    # layer 1: 3 * (10*6 + 36) * 2 = 576; layer 2: 3 * (6*6 + 36) * 2 = 432
    assert f["rnn"] == 576 + 432
    assert f["proj"] == 2 * 6 * 3 and f["output"] == 9
    lstm = model_flops(replace(m, cell="lstm"), 10, 3, 0.0)
    assert lstm["rnn"] == pytest.approx(f["rnn"] * 4 / 3)


def test_char_lstm_counts_real_characters_only(tiny_config: Path) -> None:
    s = bench.prepare(Config.load(tiny_config), torch.device("cpu"))
    from rnner import batching

    batches = list(batching.iterate(s.train, 8))
    tokens = sum(b.num_tokens for b in batches)
    padded = char_positions(batches, "cnn")
    real = char_positions(batches, "lstm")
    assert padded == pytest.approx(sum(b.chars.numel() for b in batches) / tokens)
    assert 0 < real < padded
    assert char_positions(batches, "none") == 0


def test_command_line_prints_exactly_one_json_object(
    tiny_config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "QUICK", PLAN)
    assert (
        bench.main(
            [
                "--config",
                str(tiny_config),
                "--quick",
                "--json",
                "--threads",
                "1",
                "--batch-size",
                "4",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    result = json.loads(out)  # fails on any extra output
    assert result["config"]["batch_size"] == 4
    assert result["threads"] == 1
    assert "train_step_ms_by_part" not in result


def test_threads_option_overrides_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The config says 2 threads; `--threads 1` wins, as `training.prepare` sets them."""
    corpus = str(write_corpus(tmp_path / "corpus.txt"))
    config = tmp_path / "two.toml"
    config.write_text(
        to_toml(
            tiny_sections(
                data={"train": corpus, "dev": corpus, "test": corpus}, train={"threads": 2}
            )
        )
    )
    monkeypatch.setattr(bench, "QUICK", PLAN)
    before = torch.get_num_threads()
    try:
        assert bench.main(["--config", str(config), "--quick", "--json", "--threads", "1"]) == 0
        assert json.loads(capsys.readouterr().out)["threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_table_output_names_the_measurements(
    tiny_config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench, "QUICK", PLAN)
    assert bench.main(["--config", str(tiny_config), "--quick", "--profile"]) == 0
    out = capsys.readouterr().out
    for word in ("sentences/s", "floor", "at 1 thread", "GFLOP/s", "utilization", "RSS", "rnn_fwd"):
        assert word in out


def test_bad_config_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--config", str(tmp_path / "missing.toml"), "--quick"]) == 2
    err = capsys.readouterr().err
    assert "missing.toml" in err and err.count("\n") == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_user_error(
    tiny_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--config", str(tiny_config), "--quick", "--device", "cuda"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


def test_importing_the_command_leaves_torch_unloaded() -> None:
    """cli.py builds every subcommand's parser on each call; `rnner --help` must stay fast."""
    code = "import sys, rnner.bench; sys.exit('torch' in sys.modules or 'numpy' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_a_short_plan_samples_batches_evenly_by_length(tiny_config: Path) -> None:
    """With fewer picks than batches, the picks span the epoch's range of lengths."""
    cfg = Config.load(tiny_config)
    s = bench.prepare(cfg, torch.device("cpu"))
    rng = np.random.default_rng()
    rng.bit_generator.state = s.rng.bit_generator.state
    order = batching.batch_indices(s.train.lengths, cfg.train.batch_size, rng)
    means = sorted(float(s.train.lengths[b].mean()) for b in order)
    picks = bench.training_picks(s, 2)
    assert sorted(float(s.train.lengths[p].mean()) for p in picks) == [means[0], means[-1]]


def test_the_floor_is_timed_beside_the_full_step(result: dict[str, Any]) -> None:
    assert _positive(result["floor_sentences_per_s"]) and _positive(result["floor_step_ms"])
    # the bare core leaves out the char CNN, the CRF and the rest, so it is the faster one
    assert result["floor_sentences_per_s"] > result["train_sentences_per_s"]
    assert 0 < result["train_floor_fraction"] < 1
    one = result["latency_ms_batch1_one_thread"]
    assert _positive(one["median"]) and one["p90"] >= one["median"] and one["sentences"] == 5


def test_the_floor_trains_the_config_core_on_the_timed_batches_shapes(tiny_config: Path) -> None:
    s = bench.prepare(Config.load(tiny_config), torch.device("cpu"))
    batches = [batching.make_batch(s.train, i) for i in bench.training_picks(s, 3)]
    floor = bench.Floor(s, batches)
    model_shapes = [p.shape for p in s.model.encoder.parameters()]
    assert [p.shape for p in floor.encoder.parameters()] == model_shapes
    assert floor.proj.weight.shape == s.model.proj.weight.shape
    for (x, lengths, tags, mask), b in zip(floor.inputs, batches, strict=True):
        assert x.shape == (*b.words.shape, s.model.encoder.in_dim) and x.requires_grad
        assert torch.equal(lengths, b.lengths) and torch.equal(mask, b.mask)
        assert b.tags is not None and torch.equal(tags, b.tags)
    assert type(floor.opt) is type(s.opt) and floor.opt.defaults["lr"] == s.opt.defaults["lr"]
    before = [p.detach().clone() for p in floor.module.parameters()]
    floor.step(0)
    after = list(floor.module.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_one_thread_latency_runs_at_one_thread_and_restores_the_count(
    tiny_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = bench.prepare(Config.load(tiny_config), torch.device("cpu"))
    seen = []
    monkeypatch.setattr(bench, "_latency", lambda s, plan: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        bench.bench_latency(s, PLAN, 1)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
