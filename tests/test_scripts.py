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


@pytest.mark.parametrize("client", ["python", "wrk"])
def test_serve_load_writes_every_row_without_errors(
    client: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("uvicorn", reason="the serve extra is not installed")
    if client == "wrk" and not shutil.which("wrk"):
        if os.environ.get("CI"):
            pytest.fail("CI must run serve_load with wrk (apt-get install wrk)")
        pytest.skip("wrk not installed")
    # 4 x 20 dev sentences: enough for one 50-sentence request, and a quick offline pass
    body = GOOD.read_text().split("\n\n", 1)[1]
    (tmp_path / "conll2003").mkdir()
    (tmp_path / "conll2003" / "dev.txt").write_text(
        "-DOCSTART- -X- -X- O\n\n" + body.strip() + ("\n\n" + body.strip()) * 19 + "\n"
    )
    out = tmp_path / "serve_load.json"
    args = ["--data", str(tmp_path), "--client", client, "--seconds", "1", "--requests", "20"]
    args += ["--soak", "200", "--soak-every", "100", "--offline-reps", "1", "--json", str(out)]
    assert script("benchmarks/serve_load.py").main(args) == 0
    r = json.loads(out.read_text())
    assert r["client"] == client and r["server_exit_code"] == 0
    assert [(x["sentences"], x["concurrency"]) for x in r["runs"]] == [
        (n, c) for n in (1, 50) for c in (1, 8, 64)
    ]
    assert [x["client"] for x in r["runs"]] == [client] * 3 + ["python"] * 3
    for row in r["runs"]:
        assert row["errors"] == 0 and row["requests"] >= 1, row
        assert row["tokens_per_s"] > 0 and 0 < row["p50_ms"] <= row["p99_ms"]
    soak = r["soak"]
    assert soak["errors"] == 0 and soak["requests"] >= 200
    assert [n for n, _ in soak["rss_mb"]][0] == 0 and len(soak["rss_mb"]) >= 3
    assert all(mb > 50 for _, mb in soak["rss_mb"])  # the server's RSS, torch and all
    assert r["offline_tokens_per_s"] > 0
    table = capsys.readouterr().out
    assert ("`wrk`" if client == "wrk" else "Python asyncio client") in table
    assert "| RSS MB |" in table


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


# --- benchmarks/: robustness ------------------------------------------------------------------


def test_robustness_screen_trains_scores_skips_and_feeds_the_table(
    conll_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "tiny.toml"
    sections = tiny_sections(data={"data_dir": str(conll_dir.parent)}, train={"epochs": 1})
    config.write_text(to_toml(sections), encoding="utf-8")
    spec = tmp_path / "screen.toml"
    spec.write_text(
        f'config = "{config}"\nepochs = 1\nseeds = [1]\nnice = 0\n'
        '[arms.plain]\n[arms.case]\nset = { "data.case_augment" = 1.0 }\n',
        encoding="utf-8",
    )
    reports, runs = tmp_path / "reports", tmp_path / "runs"
    argv = ["--spec", str(spec), "--reports", str(reports), "--runs", str(runs)]
    argv += ["--dev", str(GOOD), "--quiet"]
    out = run_main("benchmarks/robustness_screen.py", argv, capsys)
    assert out.splitlines() == ["plain-seed1-dev.json: written", "case-seed1-dev.json: written"]
    case = json.loads((runs / "case-seed1" / "config.json").read_text())
    assert case["data"]["case_augment"] == 1.0 and case["train"]["seed"] == 1
    assert json.loads((runs / "plain-seed1" / "metrics.json").read_text())["epochs_run"] == 1
    report = json.loads((reports / "plain-seed1-dev.json").read_text())
    assert set(report["results"]) == {"clean", "lower", "upper", "title", "typos", "mentions"}
    # A rerun trains and scores nothing.
    again = run_main("benchmarks/robustness_screen.py", argv, capsys)
    assert again.splitlines() == [
        "plain-seed1-dev.json: done before",
        "case-seed1-dev.json: done before",
    ]
    arm = f"plain={reports / 'plain-seed1-dev.json'}"
    table = rows(run_main("benchmarks/robustness_table.py", [arm], capsys))
    clean = 100 * report["results"]["clean"]["f1"]
    assert table[2][:3] == ["plain", "1", f"{clean:.2f}"]


def _log(run: Path, points: list[tuple[float, float]]) -> Path:
    """A run directory whose log.jsonl has these (elapsed seconds, dev F1 in %) epochs."""
    run.mkdir(parents=True)
    lines = [
        json.dumps({"epoch": e, "dev_f1": f / 100, "elapsed_seconds": s})
        for e, (s, f) in enumerate(points, 1)
    ]
    (run / "log.jsonl").write_text("\n".join(lines) + "\n")
    return run


def test_time_to_f1_reads_the_first_epoch_at_the_threshold(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = _log(tmp_path / "a", [(20.0, 90.0), (38.0, 94.0), (59.0, 95.0)])
    b = _log(tmp_path / "b", [(18.0, 93.9), (40.0, 93.0), (60.0, 94.5)])
    c = _log(tmp_path / "c", [(19.0, 80.0)])
    table = rows(run_main("benchmarks/time_to_f1.py", [f"x={a}", f"x={b}", f"y={c}"], capsys))
    # 94.0 reached at epoch 2 exactly; median of 20, 18 and 21 s an epoch
    assert table[2] == ["x", "2", "38.0", "20.0", "95.00", "-"]
    assert table[3] == ["x", "3", "60.0", "20.0", "94.50", "-"]
    assert table[4][:3] == ["y", "not in 1", "-"]
    assert table[7] == ["x", "2", "49.00 ± 15.56 (2 of 2 reached it)", "94.75 ± 0.35", "-"]
    assert table[8] == ["y", "1", "- (0 of 1 reached it)", "80.00", "-"]


def test_peer_benchmark_takes_the_first_sentences_without_document_markers(
    tmp_path: Path,
) -> None:
    src = tmp_path / "in.txt"
    src.write_text(
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n"
        "Peter NNP B-NP B-PER\n\nBlackburn NNP B-NP B-PER\n",
        encoding="utf-8",
    )
    peers = script("benchmarks/peers/flair_vs_rnner.py")
    assert peers.first_sentences(src, tmp_path / "out.txt", 2) == 3  # tokens
    assert (tmp_path / "out.txt").read_text(encoding="utf-8") == (
        "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n\n"
    )
    assert peers.first_sentences(src, tmp_path / "all.txt", 10) == 4


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
