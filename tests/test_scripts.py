"""Every script whose output README.md or docs/ quote (benchmarks/, research/) runs on tiny data
and prints what the docs read from it: a table row with the run's own numbers, a JSON key with
a plausible value. Scripts run in-process (`main(argv)`) except where the script itself is
what is tested (bench.py's wrapper, predict_scale.py's child process).

benchmarks/study_summary.py and run_study.sh are left to their own tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import GOOD, tiny_sections, to_toml

ROOT = Path(__file__).resolve().parents[1]

# A dev/test file whose words training (GOOD) never shows, but GloVe knows.
UNSEEN = """-DOCSTART- -X- -X- O

Paris NNP I-NP B-LOC
accepts VBZ I-VP O
French JJ I-NP B-MISC
plan NN I-NP O
. . O O

Peter NNP I-NP B-PER
Blackburn NNP I-NP I-PER
"""


def script(relative: str) -> ModuleType:
    """Import a script by path (they are not a package), once per session."""
    name = "script_" + relative.replace("/", "_").removesuffix(".py")
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / relative)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def run_main(relative: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert script(relative).main(argv) == 0
    return capsys.readouterr().out


def rows(out: str) -> list[list[str]]:
    """The cells of each Markdown table row (header and rule included)."""
    return [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in out.splitlines()
        if line.startswith("|")
    ]


def metrics(run: Path) -> dict[str, Any]:
    return json.loads((run / "metrics.json").read_text())


def env() -> dict[str, str]:
    """The child sees this checkout's src/ first, as the tests do."""
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), e.get("PYTHONPATH", "")])
    return e


# --- benchmarks/: speed -----------------------------------------------------------------------


def test_bench_script_json_feeds_bench_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python benchmarks/bench.py --quick --json > X.json`, then bench_table.py over it, as
    docs/performance.md does."""
    corpus = str(GOOD)
    config = tmp_path / "tiny.toml"
    config.write_text(
        to_toml(tiny_sections(data={"train": corpus, "dev": corpus, "test": corpus})),
        encoding="utf-8",
    )
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks/bench.py"),
            "--config",
            str(config),
            "--quick",
            "--json",
            "--threads",
            "1",
            "--batch-size",
            "2",
        ],
        capture_output=True,
        text=True,
        env=env(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # one object, nothing else on stdout
    assert result["config"]["batch_size"] == 2 and result["threads"] == 1
    assert result["train_flops_per_token"] == pytest.approx(
        3 * result["infer_flops_per_token"], rel=0.5
    )
    assert result["train_sentences_per_s"] > 0 and result["matmul_gflops"] > 0
    saved = tmp_path / "quick.json"
    saved.write_text(done.stdout)
    table = rows(run_main("benchmarks/bench_table.py", [f"a={saved}", f"b={saved}"], capsys))
    assert table[0] == ["measurement", "a", "b"]
    by_label = {r[0]: r[1:] for r in table[2:]}
    rate = f"{result['train_tokens_per_s']:.0f}"
    assert by_label["train tokens/s"] == [rate, rate]
    assert by_label["train step, ms (batch 2)"][0] == f"{result['train_step_ms']:.1f}"
    assert "infer tokens/s at batch 1 / 256 / 1024" in by_label


def test_predict_scale_reports_speed_and_memory_marks(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "news.txt"
    out = run_main(
        "benchmarks/predict_scale.py",
        [
            str(tiny_run),
            "--mb",
            "0.05",
            "--dev",
            str(GOOD),
            "--input",
            str(text),
            "--threads",
            "1",
            "--interval",
            "0.01",
            "--json",
        ],
        capsys,
    )
    r = json.loads(out)
    assert r["exit_code"] == 0 and r["threads"] == 1
    assert r["input"]["bytes"] == text.stat().st_size
    assert 0.95 * 0.05 * 2**20 <= r["input"]["bytes"] <= 1.05 * 0.05 * 2**20
    words = sum(len(line.split()) for line in text.read_text().splitlines())
    assert 0.5 * words <= r["input"]["tokens"] <= 2 * words  # tokens: "call." is two
    assert r["tokens_per_s"] > 0 and r["tokens_per_s_tagging"] >= r["tokens_per_s"]
    assert r["max_rss_mib"] > 50  # torch alone is more; 0 would mean the child was not seen


# --- research/: tables of finished runs --------------------------------------------------------


def test_runs_table_row_quotes_the_run(tiny_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = rows(run_main("research/runs_table.py", [f"tiny={tiny_run}"], capsys))
    m = metrics(tiny_run)
    kinds = sorted(m["test"]["entity"]["per_type"])
    assert table[0][:3] == ["run", "dev F1", "test F1"]
    assert table[0][3 : 3 + len(kinds)] == [f"test {k}" for k in kinds]
    row = table[2]
    assert row[:3] == [
        "tiny",
        f"{100 * m['dev']['entity']['f1']:.2f}",
        f"{100 * m['test']['entity']['f1']:.2f}",
    ]
    assert row[3 + len(kinds)] == f"{m['best_epoch']}/{m['epochs_run']}"


def _experiment(root: Path, template: dict[str, Any], dev: dict[int, float]) -> Path:
    """An `rnner experiment` directory: seedN/metrics.json with the given dev F1."""
    for seed, f1 in dev.items():
        m = json.loads(json.dumps(template))
        m["dev"]["entity"]["f1"] = f1
        (root / f"seed{seed}").mkdir(parents=True)
        (root / f"seed{seed}" / "metrics.json").write_text(json.dumps(m))
    return root


def test_compare_seeds_differences_by_hand(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = metrics(tiny_run)
    a = _experiment(tmp_path / "a", template, {1: 0.80, 2: 0.90, 3: 0.85})
    b = _experiment(tmp_path / "b", template, {1: 0.81, 2: 0.92, 4: 0.99})
    table = rows(run_main("research/compare_seeds.py", [f"ref={a}", f"new={b}"], capsys))
    ref, new = table[2], table[3]
    assert ref[:5] == ["ref", "3", "85.00 ± 5.00", "ref.", "ref."]
    # new: mean 90.67, sample std of 81, 92, 99 = 9.07; +5.67 over the reference
    assert new[:4] == ["new", "3", "90.67 ± 9.07", "+5.67"]
    assert 0 < float(new[4]) < 1  # Welch's p, far from significant on three seeds
    test = f"{100 * template['test']['entity']['f1']:.2f}"
    assert ref[5] == f"{test} ± 0.00" and new[5] == ref[5]
    assert new[-2] == "+1.00 +2.00"  # seeds both ran (1, 2), dev difference each
    assert new[-1] == f"{template['train_seconds']:.0f}"


def test_plot_curve_writes_the_figure_and_the_time_table(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = [json.loads(line) for line in (tiny_run / "log.jsonl").read_text().splitlines()]
    best = max(log, key=lambda r: r["dev_f1"])
    first = log[0]
    png = tmp_path / "curve.png"
    out = run_main(
        "research/plot_curve.py",  # threshold 0: reached at the first epoch
        [
            "--output",
            str(png),
            "--threshold",
            "0",
            "--epochs",
            "2",
            f"tiny={tiny_run}",
            f"never={tiny_run}",
        ],
        capsys,
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = rows(out)
    epochs = table[2:4]  # --epochs 2: dev F1 per epoch, side by side
    assert [e[0] for e in epochs] == ["1", "2"]
    assert epochs[0][1] == epochs[0][2] == f"{100 * first['dev_f1']:.2f}"
    tiny = next(r for r in table if r[0] == "tiny")
    assert tiny[1:] == [
        f"{first['elapsed_seconds']:.0f}",
        f"{100 * best['dev_f1']:.2f}",
        f"{best['elapsed_seconds']:.0f}",
    ]
    never = rows(
        run_main(
            "research/plot_curve.py",
            ["--output", str(png), "--threshold", "101", f"x={tiny_run}"],
            capsys,
        )
    )
    assert never[2][1] == "never"


# --- research/: analyses that load a trained model ----------------------------------------------


def test_ensemble_of_one_is_its_posterior_and_viterbi_is_evaluate(
    tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = rows(
        run_main(
            "research/ensemble.py",
            [str(tiny_run), str(tiny_run), "--splits", "dev", "--threads", "1"],
            capsys,
        )
    )
    assert table[0] == ["k", "run", "dev Viterbi", "dev posterior", "dev ensemble of 1..k"]
    one, two = table[2], table[3]
    assert one[2] == f"{100 * metrics(tiny_run)['dev']['entity']['f1']:.2f}"  # as evaluate
    assert one[4] == one[3]  # an ensemble of one run is its posterior decoding
    assert two[2:] == one[2:]  # a run averaged with itself decodes the same


def test_unseen_recall_groups_cover_every_dev_entity(
    tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rnner import tags
    from rnner.pipeline import load_corpus
    from rnner.runs import load_run

    table = rows(run_main("research/unseen_recall.py", ["--mean", f"tiny={tiny_run}"], capsys))
    assert table[0] == [
        "run",
        "seen recall",
        "pretrained recall",
        "unknown recall",
        "entities per group",
    ]
    tiny, mean = table[2], table[3]
    assert tiny[0] == "tiny" and mean[0] == "mean of 1" and mean[1:4] == tiny[1:4]
    cfg = load_run(str(tiny_run))[2]
    gold = sum(len(tags.spans(list(s.tags), cfg.data.scheme)) for s in load_corpus(cfg).dev)
    counts = [int(n) for n in tiny[4].split(" / ")]
    assert sum(counts) == gold and gold > 100
    recalls = [float(x) for x in tiny[1:4]]
    assert all(0 <= r <= 100 for r in recalls)
    found = sum(r * n / 100 for r, n in zip(recalls, counts, strict=True))
    assert found / gold == pytest.approx(metrics(tiny_run)["dev"]["entity"]["recall"], abs=1e-3)


def test_crf_precision_float32_gradient_is_close(
    tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = rows(
        run_main("research/crf_precision.py", [str(tiny_run), "--sentences", "100"], capsys)
    )
    assert len(table) == 2 + 2  # header, rule, batches of 64: 100 sentences
    assert sum(int(r[1]) for r in table[2:]) > 100  # tokens
    for r in table[2:]:
        assert 0 < float(r[3]) < 1  # 1 - P(gold tag), a probability
        assert float(r[5]) < 1e-4  # float32 error of the shifted forward algorithm


# --- research/: data and embeddings -------------------------------------------------------------


def test_doc_lengths_by_hand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for split in ("train", "dev", "test"):
        shutil.copy(GOOD, tmp_path / f"{split}.txt")
    table = rows(run_main("research/doc_lengths.py", [str(tmp_path)], capsys))
    # two articles: 5 + 2 tokens, then 2; mean 4.5 prints as 4 (round half to even)
    assert table[2:] == [[s, "2", "4", "7"] for s in ("train", "dev", "test")]


@pytest.fixture(scope="module")
def glove_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """glove_subset.py's vectors for GOOD and UNSEEN, and a run trained on them (train GOOD,
    dev and test UNSEEN): the subset works as `model.embeddings`, and oov_map.py has dev
    words that only GloVe knows."""
    from rnner.cli import main

    root = tmp_path_factory.mktemp("glove_run")
    unseen = root / "unseen.txt"
    unseen.write_text(UNSEEN, encoding="utf-8")
    vectors = root / "glove-small.txt"
    assert script("research/glove_subset.py").main([str(vectors), str(GOOD), str(unseen)]) == 0
    config = root / "tiny.toml"
    config.write_text(
        to_toml(
            tiny_sections(
                data={"train": str(GOOD), "dev": str(unseen), "test": str(unseen)},
                model={"embeddings": str(vectors)},
                train={"epochs": 3},
            )
        ),
        encoding="utf-8",
    )
    assert main(["train", str(config), "--output", str(root / "run"), "--quiet"]) == 0
    return root


def test_glove_subset_writes_the_packaged_vectors(glove_run: Path) -> None:
    from rnner import embeddings

    lines = (glove_run / "glove-small.txt").read_text().splitlines()
    words = [line.split(" ", 1)[0] for line in lines]
    assert {"eu", "german", "münchen", "paris", "french", "accepts"} <= set(words)
    assert "1996-08-22" not in words and all(len(line.split()) == 51 for line in lines)
    small = embeddings.load(str(glove_run / "glove-small.txt"))
    packaged = embeddings.load_packaged()
    for w in ("paris", "german"):
        got = small.vectors[small.index[w]]
        assert got == pytest.approx(packaged.vectors[packaged.index[w]], rel=1e-5, abs=1e-6)


@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value encountered")
def test_oov_map_moves_only_unseen_words(
    glove_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = glove_run / "run"
    out = run_main(
        "research/oov_map.py", [str(run), "--alpha", "1", "1000", "--splits", "dev"], capsys
    )
    table = rows(out)
    assert table[0] == [
        "run",
        "train words fitted",
        "unseen words moved",
        "dev 0",
        "dev 1",
        "dev 1000",
    ]
    row = table[2]
    # train GOOD: eu rejects german call . peter blackburn münchen (the date has no vector);
    # dev only: paris accepts french plan
    assert row[1:3] == ["8", "4"]
    assert row[3] == f"{100 * metrics(run)['dev']['entity']['f1']:.2f}"  # as saved
    assert all(0 <= float(x) <= 100 for x in row[3:])
    assert "Median relative drift" in out
    drift = rows(out.split("Median relative drift", 1)[1])
    assert drift[0][0] == "run" and drift[2][0] == str(run)
    once, rest = drift[2][1], drift[2][2:]  # GOOD shows each of the 8 words once
    assert once.endswith("(8)") and 0 < float(once.split()[0]) < 1
    assert rest == ["nan (0)"] * 4


# --- benchmarks/: the accuracy levers' costs (docs/accuracy-levers.md) --------------------------


def _tiny_conll_config(tmp_path: Path, conll_dir: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(to_toml(tiny_sections(data={"data_dir": str(conll_dir.parent)})))
    return path


def test_lexicon_speed_prints_both_rates_and_the_matching_cost(
    tmp_path: Path, conll_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rnner.lexicon import Lexicon

    lexicon = tmp_path / "lex.jsonl"
    lexicon.write_text(Lexicon({"LOC": [("Germany",)]}).to_text(), encoding="utf-8")
    config = _tiny_conll_config(tmp_path, conll_dir)
    argv = ["--lexicon", str(lexicon), "--config", str(config), "--sentences", "20"]
    argv += ["--limit", "30", "--reps", "2", "--threads", "1", "--keep", str(tmp_path / "k")]
    out = run_main("benchmarks/lexicon_speed.py", argv, capsys)
    table = rows(out)
    assert [r[0] for r in table[2:]] == ["plain", "lexicon"]
    assert all(float(r[1].replace(",", "")) > 0 for r in table[2:])
    assert "speed ratio lexicon / plain, median of the paired reps: " in out
    assert "µs per token (1 phrases)" in out
    assert (tmp_path / "k" / "lexicon" / "lexicon.jsonl").is_file()


def test_distill_step_times_both_losses(
    tmp_path: Path, conll_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _tiny_conll_config(tmp_path, conll_dir)
    argv = ["--config", str(config), "--sentences", "20", "--reps", "2", "--threads", "1"]
    out = run_main("benchmarks/distill_step.py", argv, capsys)
    table = rows(out)
    assert [r[0] for r in table[2:]] == ["plain", "distill"]
    assert "first 20 training sentences" in out
    assert "time ratio distill / plain, median of the paired passes: " in out
