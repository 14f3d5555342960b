import io
import json
import re
from pathlib import Path

import pytest
from conftest import GOOD

from rnner import __version__
from rnner.cli import main

LABELS = {"PER", "ORG", "LOC", "MISC"}
FIRST_LINE = re.compile(
    r"processed (\d+) tokens with (\d+) phrases; found: (\d+) phrases; correct: (\d+)\.$"
)
SCORE_FILE = (
    "EU B-ORG B-ORG\n"
    "rejects O O\n"
    "German B-MISC B-PER\n"
    "call O O\n"
    "\n"
    "Peter B-PER B-PER\n"
    "Blackburn I-PER I-PER\n"
)
RAW_TEXT = "EU rejects German call to boycott British lamb.\nPeter Blackburn visited Brussels.\n"


def run(capsys, argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def score_file(tmp_path) -> Path:
    path = tmp_path / "scored.txt"
    path.write_text(SCORE_FILE, encoding="utf-8")
    return path


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"rnner {__version__}\n"


def test_score_text(capsys, score_file):
    code, out, err = run(capsys, ["score", score_file])
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert FIRST_LINE.match(lines[0])
    assert lines[0] == "processed 6 tokens with 3 phrases; found: 3 phrases; correct: 2."
    assert lines[1] == ("accuracy:  83.33%; precision:  66.67%; recall:  66.67%; FB1:  66.67")
    assert lines[2:] == [
        "             MISC: precision:   0.00%; recall:   0.00%; FB1:   0.00  0",
        "              ORG: precision: 100.00%; recall: 100.00%; FB1: 100.00  1",
        "              PER: precision:  50.00%; recall: 100.00%; FB1:  66.67  2",
    ]


def test_score_json(capsys, score_file):
    code, out, _ = run(capsys, ["score", score_file, "--json"])
    assert code == 0
    d = json.loads(out)
    assert d["precision"] == pytest.approx(2 / 3)
    assert d["recall"] == pytest.approx(2 / 3)
    assert d["f1"] == pytest.approx(2 / 3)
    assert d["accuracy"] == pytest.approx(5 / 6)
    assert d["per_type"]["PER"] == {
        "precision": 0.5,
        "recall": 1.0,
        "f1": pytest.approx(2 / 3),
        "support": 1,
    }
    assert d["per_type"]["MISC"]["support"] == 1


def test_score_stdin(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(SCORE_FILE))
    code, out, _ = run(capsys, ["score", "-"])
    assert code == 0
    assert out.splitlines()[0] == "processed 6 tokens with 3 phrases; found: 3 phrases; correct: 2."


def test_evaluate_json(capsys, tiny_run, conll_dir):
    code, out, err = run(capsys, ["evaluate", tiny_run, "--data", conll_dir / "dev.txt", "--json"])
    assert (code, err) == (0, "")
    d = json.loads(out)
    assert set(d) == {"entity", "token"}
    assert set(d["entity"]) == {"precision", "recall", "f1", "per_type"}
    assert set(d["token"]) == {"accuracy", "report"}
    for value in (
        d["entity"]["precision"],
        d["entity"]["recall"],
        d["entity"]["f1"],
        d["token"]["accuracy"],
    ):
        assert 0.0 <= value <= 1.0
    assert set(d["entity"]["per_type"]) == LABELS
    assert d["entity"]["per_type"]["PER"]["support"] == 1842  # PER mentions in CoNLL-2003 dev
    report = d["token"]["report"]
    assert {"O", "B-PER", "I-PER"} <= set(report)
    assert report["O"]["support"] == 42759
    # A model tagging O everywhere has token accuracy 42759/51362 = 0.833 and finds nothing;
    # the session model (dev entity F1 0.24, accuracy 0.853 when written) finds entities.
    assert d["token"]["accuracy"] > 42759 / 51362 + 0.01
    assert d["entity"]["f1"] > 0.12 and d["entity"]["precision"] > 0.12
    assert d["entity"]["per_type"]["LOC"]["f1"] > 0.2


def test_evaluate_text_and_output_agrees_with_score(capsys, tiny_run, tmp_path):
    data = tmp_path / "gold.txt"
    sentences = [
        "EU B-ORG\nrejects O\nGerman B-MISC\ncall O\nto O\nboycott O\nBritish B-MISC\nlamb O\n. O",
        "Peter B-PER\nBlackburn I-PER",
        "BRUSSELS B-LOC\n1996-08-22 O",
    ]
    data.write_text("\n\n".join(sentences) + "\n", encoding="utf-8")
    predictions = tmp_path / "pred.txt"
    code, out, err = run(capsys, ["evaluate", tiny_run, "--data", data, "--output", predictions])
    assert (code, err) == (0, "")
    first = out.splitlines()[0]
    m = FIRST_LINE.match(first)
    assert m and m.group(1, 2) == ("13", "5")
    assert "precision" in out and "support" in out  # conlleval lines, then the token report
    written = predictions.read_text(encoding="utf-8").split("\n\n")
    assert written[0].splitlines()[0].split()[:2] == ["EU", "B-ORG"]
    assert all(len(line.split()) == 3 for line in predictions.read_text().splitlines() if line)
    code, scored, _ = run(capsys, ["score", predictions])
    assert code == 0
    assert scored.splitlines()[0] == first


def test_predict_jsonl(capsys, tiny_run, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text(RAW_TEXT, encoding="utf-8")
    code, out, err = run(capsys, ["predict", tiny_run, "--input", source, "--quiet"])
    assert (code, err) == (0, "")
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["line"] for r in records] == [1, 2]
    assert [r["text"] for r in records] == RAW_TEXT.splitlines()
    assert sum(len(r["spans"]) for r in records) > 0
    for r in records:
        for s in r["spans"]:
            assert r["text"][s["start"] : s["end"]] == s["text"]
            assert s["label"] in LABELS


def test_predict_text_format(capsys, tiny_run, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text(RAW_TEXT, encoding="utf-8")
    code, out, _ = run(
        capsys, ["predict", tiny_run, "--input", source, "--format", "text", "--quiet"]
    )
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 2
    marks = re.compile(r"\[(PER|ORG|LOC|MISC) ([^\]]+)\]")
    assert any(marks.search(line) for line in lines)
    # Removing the brackets gives the input back.
    assert [marks.sub(r"\2", line) for line in lines] == RAW_TEXT.splitlines()


def test_predict_conll_format(capsys, tiny_run, tmp_path):
    source = tmp_path / "in.conll"
    source.write_text("EU\nrejects\nGerman\ncall\n\nPeter\nBlackburn\n", encoding="utf-8")
    code, out, _ = run(
        capsys, ["predict", tiny_run, "--input", source, "--format", "conll", "--quiet"]
    )
    assert code == 0
    blocks = out.split("\n\n")
    assert blocks[-1] == ""
    rows = [[line.split() for line in b.splitlines()] for b in blocks[:-1]]
    assert [[r[0] for r in block] for block in rows] == [
        ["EU", "rejects", "German", "call"],
        ["Peter", "Blackburn"],
    ]
    for block in rows:
        for _, tag in block:
            assert tag == "O" or (tag[:2] in ("B-", "I-") and tag[2:] in LABELS)


def test_predict_output_file(capsys, tiny_run, tmp_path):
    source = tmp_path / "in.txt"
    source.write_text(RAW_TEXT, encoding="utf-8")
    target = tmp_path / "sub" / "out.jsonl"
    code, out, err = run(
        capsys, ["predict", tiny_run, "--input", source, "--output", target, "--quiet"]
    )
    assert (code, out, err) == (0, "", "")
    lines = target.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["line"] for line in lines] == [1, 2]
    assert [p.name for p in target.parent.iterdir()] == ["out.jsonl"]  # no temporary left


def test_train_through_cli_prints_summary(capsys, write_config, tmp_path):
    config = write_config(train={"epochs": 1})
    code, out, err = run(
        capsys,
        [
            "train",
            config,
            "--train",
            GOOD,
            "--dev",
            GOOD,
            "--test",
            GOOD,
            "--output",
            tmp_path / "run",
            "--quiet",
            "--seed",
            "3",
        ],
    )
    assert (code, err) == (0, "")
    assert out.splitlines()[0].startswith("best epoch 1 of 1 (")
    assert out.splitlines()[0].endswith(f"run directory: {tmp_path / 'run'}")
    assert re.search(r"^dev   entity P/R/F1 \d+\.\d\d / \d+\.\d\d / \d+\.\d\d$", out, re.M)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["seed"] == 3
    assert saved["data"]["train"] == str(GOOD)


def test_train_epochs_flag(capsys, write_config, tmp_path):
    config = write_config(train={"epochs": 5})
    code, out, _ = run(
        capsys,
        [
            "train",
            config,
            "--train",
            GOOD,
            "--dev",
            GOOD,
            "--test",
            GOOD,
            "--output",
            tmp_path / "run",
            "--quiet",
            "--epochs",
            "2",
        ],
    )
    assert code == 0
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 2


@pytest.mark.parametrize("name", ['with "quotes"', "back\\new", "C:\\Users"])
def test_train_paths_with_special_characters(capsys, write_config, tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    data = folder / "small.txt"
    data.write_bytes(GOOD.read_bytes())
    config = write_config(train={"epochs": 1})
    code, _, err = run(
        capsys,
        [
            "train",
            config,
            "--train",
            data,
            "--dev",
            data,
            "--test",
            data,
            "--output",
            tmp_path / "run",
            "--quiet",
        ],
    )
    assert (code, err) == (0, "")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["data"]["train"] == str(data)
