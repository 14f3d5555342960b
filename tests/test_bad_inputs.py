"""Bad input through the real command line: exit status 2 and exactly one line on stderr,
`path:line: message` (or `path: message` for whole-file problems), never a traceback, and no
run directory or output file left behind."""

import json
import re
from pathlib import Path

import pytest
from conftest import BAD, GOOD

from rnner.cli import main

LONG_SENTENCE = 100_000
LONG_TOKEN = 10_000


def make_long_sentence(tmp_path: Path) -> Path:
    path = tmp_path / "long_sentence.txt"
    path.write_text("".join(f"w{i} O O\n" for i in range(LONG_SENTENCE)), encoding="utf-8")
    return path


def make_long_token(tmp_path: Path) -> Path:
    path = tmp_path / "long_token.txt"
    path.write_text("short O O\n\n" + "a" * LONG_TOKEN + " O O\n", encoding="utf-8")
    return path


def make_directory(tmp_path: Path) -> Path:
    path = tmp_path / "a_directory"
    path.mkdir()
    return path


def make_conlleval_unknown_prefix(tmp_path: Path) -> Path:
    # conlleval input: word, gold, predicted (the CoNLL files above have chunk tags in the
    # second-to-last column, which score would read as gold).
    path = tmp_path / "conlleval_unknown_prefix.txt"
    path.write_text("EU B-ORG B-ORG\nrejects O O\n\nPeter X-PER B-PER\n", encoding="utf-8")
    return path


MAKERS = {
    "conlleval_unknown_prefix": make_conlleval_unknown_prefix,
    "long_sentence": make_long_sentence,
    "long_token": make_long_token,
    "directory": make_directory,
    "missing": lambda tmp_path: tmp_path / "missing.txt",
}

# name -> (line or None for a whole-file problem, message) as the CoNLL reader reports it.
READER_ERRORS = {
    "wrong_columns.txt": (1, "expected at least 2 columns (word and tag), found 1"),
    "varying_columns.txt": (7, "expected 4 columns, found 3"),
    "unknown_prefix.txt": (4, "unknown tag prefix 'X' in 'X-PER'"),
    "empty.txt": (None, "no sentences found"),
    "only_docstart.txt": (None, "no sentences found"),
    "not_utf8.txt": (3, "not UTF-8 text: byte 0xfc at offset 20"),
    "binary.bin": (2, "binary data: byte 0x1a at offset 6"),
    "directory": (None, "is a directory"),
    "missing": (None, "no such file"),
    "long_sentence": (10_001, "sentence starting at line 1 exceeds 10000 tokens"),
    "long_token": (3, f"token of {LONG_TOKEN} characters exceeds the limit of 1000"),
}


def bad_path(name: str, tmp_path: Path) -> Path:
    return MAKERS[name](tmp_path) if name in MAKERS else BAD / name


def expected(path: Path, line: int | None, message: str) -> str:
    return f"{path}: {message}" if line is None else f"{path}:{line}: {message}"


def one_line_error(capsys, argv) -> str:
    """Run the CLI, check exit status 2 and a single stderr line; return that line."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    assert "Traceback" not in err
    assert err.endswith("\n") and err.count("\n") == 1, err
    return err[:-1]


@pytest.fixture
def config(write_config) -> Path:
    return write_config(train={"epochs": 1})


@pytest.mark.parametrize("role", ["train", "dev", "test"])
@pytest.mark.parametrize("name", list(READER_ERRORS))
def test_train_refuses_bad_data(capsys, tmp_path, config, name, role):
    path = bad_path(name, tmp_path)
    files = {"train": GOOD, "dev": GOOD, "test": GOOD, role: path}
    out = tmp_path / "run"
    argv = ["train", config, "--output", out, "--quiet"]
    for split, file in files.items():
        argv += [f"--{split}", file]
    assert one_line_error(capsys, argv) == expected(path, *READER_ERRORS[name])
    assert not out.exists()


@pytest.mark.parametrize("name", list(READER_ERRORS))
def test_evaluate_refuses_bad_data(capsys, tmp_path, tiny_run, name):
    path = bad_path(name, tmp_path)
    predictions = tmp_path / "predictions.txt"
    argv = ["evaluate", tiny_run, "--data", path, "--output", predictions]
    assert one_line_error(capsys, argv) == expected(path, *READER_ERRORS[name])
    assert not predictions.exists()


SCORE_ERRORS = {
    "wrong_columns.txt": (1, "expected at least 2 columns (gold tag, predicted tag), found 1"),
    "varying_columns.txt": (7, "expected 4 columns as on the first line, found 3"),
    "directory": (None, "is a directory"),
    "missing": (None, "no such file"),
}


@pytest.mark.parametrize("name", list(SCORE_ERRORS))
def test_score_refuses_bad_data(capsys, tmp_path, name):
    path = bad_path(name, tmp_path)
    assert one_line_error(capsys, ["score", path]) == expected(path, *SCORE_ERRORS[name])


SCORE_SHOULD_REFUSE = {
    "conlleval_unknown_prefix": "metrics._parse_conlleval accepts any tag; conlleval_chunks "
    "reads X-PER as a PER chunk",
    "empty.txt": "metrics.read_conlleval returns no sentences and score prints zeros, exit 0",
    "only_docstart.txt": "-DOCSTART- lines are scored as tokens whose gold tag is '-X-'",
    "not_utf8.txt": "metrics.read_conlleval uses open(); UnicodeDecodeError escapes cli.main",
    "binary.bin": "metrics.read_conlleval uses open(); UnicodeDecodeError escapes cli.main",
}


@pytest.mark.parametrize(
    "name",
    list(SCORE_SHOULD_REFUSE),
)
def test_score_should_refuse_bad_data(capsys, tmp_path, name):
    path = bad_path(name, tmp_path)
    line = one_line_error(capsys, ["score", path])
    assert re.fullmatch(rf"{re.escape(str(path))}(:\d+)?: \S.*", line), line
    if name == "conlleval_unknown_prefix":
        assert line.startswith(f"{path}:4: ") and "X-PER" in line
    if name == "not_utf8.txt":
        assert line.startswith(f"{path}:3: ")


@pytest.mark.parametrize(("name", "tokens"), [("long_sentence", LONG_SENTENCE), ("long_token", 2)])
def test_score_has_no_size_limits(capsys, tmp_path, name, tokens):
    # Scoring only counts tags: nothing grows with sentence or token length, so conlleval
    # files of any shape are scored, unlike files that go through a model.
    code = main(["score", str(bad_path(name, tmp_path))])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == (
        f"processed {tokens} tokens with 0 phrases; found: 0 phrases; correct: 0."
    )


CONFIG_ERRORS = {
    "bad_config_unknown_key.toml": "config model.hidden_sise: unknown key; known keys here: "
    "bidirectional, case_shares, casing_dim, cell, char_dim, char_encoder, char_hidden, "
    "char_kernel, dropout, embeddings, freeze_embeddings, hidden_size, layers, lexicon, "
    "lexicon_dim, lexicon_lowercase, lm_dim, lm_vocab, lm_weight, locked_dropout, output, "
    "pool_layers, pretrained_dropout, repeat_key, repeat_pooling, "
    "singleton_unk, word_dim, word_dropout",
    "bad_config_type.toml": "config model.hidden_size: expected int, found str '16'",
    "bad_config_range.toml": "config model.dropout: 1.5 is out of range [0.0, 0.99]",
}


@pytest.mark.parametrize("name", list(CONFIG_ERRORS))
def test_train_refuses_bad_config(capsys, tmp_path, name):
    out = tmp_path / "run"
    argv = [
        "train",
        BAD / name,
        "--train",
        GOOD,
        "--dev",
        GOOD,
        "--test",
        GOOD,
        "--output",
        out,
        "--quiet",
    ]
    line = one_line_error(capsys, argv)
    if name == "bad_config_unknown_key.toml":
        # The known keys are listed, the typo's intended key among them.
        assert line.startswith("config model.hidden_sise: unknown key; known keys here:")
        assert "hidden_size" in line.split("known keys here: ")[1].split(", ")
    assert line == CONFIG_ERRORS[name]
    assert not out.exists()


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("model.cell=transformer", "config model.cell: 'transformer' is not one of rnn, gru, lstm"),
        (
            "train.epoch=3",
            "config train.epoch: unknown key; known keys here: batch_size, clip, "
            "device, distill_cache, distill_weight, ema, embedding_lr_scale, epochs, "
            "eval_batch_size, gamma, init, lr, lr_decay, momentum, nesterov, optimizer, "
            "patience, schedule, seed, select, step_size, teachers, threads, weight_decay",
        ),
        ("train.batch_size=0", "config train.batch_size: 0 is out of range [1, inf]"),
        ("model.layers=two", "config model.layers: expected int, found str 'two'"),
        ("epochs=3", "config epochs: an override key must look like section.key"),
    ],
)
def test_train_refuses_bad_set(capsys, tmp_path, config, item, message):
    out = tmp_path / "run"
    argv = [
        "train",
        config,
        "--set",
        item,
        "--train",
        GOOD,
        "--dev",
        GOOD,
        "--output",
        out,
        "--quiet",
    ]
    assert one_line_error(capsys, argv) == message
    assert not out.exists()


def test_train_missing_and_invalid_config(capsys, tmp_path):
    missing = tmp_path / "missing.toml"
    argv = ["train", missing, "--train", GOOD, "--dev", GOOD, "--output", tmp_path / "run"]
    assert one_line_error(capsys, argv) == f"config {missing}: No such file or directory"
    broken = tmp_path / "broken.toml"
    broken.write_text("[model\nhidden_size = 3\n", encoding="utf-8")
    argv[1] = str(broken)
    line = one_line_error(capsys, argv)
    assert line.startswith(f"config {broken}: not valid TOML: ")
    assert "line 1" in line
    assert not (tmp_path / "run").exists()


def test_train_missing_embeddings_file(capsys, tmp_path, write_config):
    vectors = tmp_path / "nope.vec"
    config = write_config(model={"embeddings": str(vectors)})
    out = tmp_path / "run"
    argv = ["train", config, "--train", GOOD, "--dev", GOOD, "--test", GOOD, "--output", out]
    assert one_line_error(capsys, argv) == (
        f"{vectors}: no such embeddings file (use 'glove-6b-50d', 'random', or a path)"
    )
    assert not out.exists()


def test_train_malformed_embeddings_file(capsys, tmp_path, write_config):
    vectors = tmp_path / "bad.vec"
    vectors.write_text("the 0.1 0.2 0.3\ncat 0.1 0.2\n", encoding="utf-8")
    config = write_config(model={"embeddings": str(vectors)})
    out = tmp_path / "run"
    argv = ["train", config, "--train", GOOD, "--dev", GOOD, "--test", GOOD, "--output", out]
    assert one_line_error(capsys, argv) == f"{vectors}:2: expected a word and 3 numbers"
    assert not out.exists()


# --- run directories and prediction input --------------------------------------------------


def test_evaluate_refuses_pickle_run(capsys, run_copy):
    (run_copy / "weights.pth").write_bytes(b"\x80\x04K\x01.")
    line = one_line_error(capsys, ["evaluate", run_copy, "--data", GOOD])
    assert line.startswith(f"{run_copy}: refusing to load a run directory holding pickle files")
    assert "weights.pth" in line


def test_evaluate_missing_run(capsys, tmp_path):
    line = one_line_error(capsys, ["evaluate", tmp_path / "nope", "--data", GOOD])
    assert line == f"{tmp_path / 'nope'}: not a run directory (no such directory)"


def test_predict_refuses_bad_text_and_writes_nothing(capsys, tmp_path, tiny_run):
    target = tmp_path / "out.jsonl"
    path = BAD / "not_utf8.txt"
    argv = ["predict", tiny_run, "--input", path, "--output", target, "--quiet"]
    assert one_line_error(capsys, argv) == f"{path}:3: not UTF-8 text"
    assert list(tmp_path.iterdir()) == []


def test_predict_can_skip_bad_lines(capsys, tmp_path, tiny_run):
    target = tmp_path / "out.jsonl"
    path = BAD / "not_utf8.txt"
    code = main(
        [
            "predict",
            str(tiny_run),
            "--input",
            str(path),
            "--output",
            str(target),
            "--quiet",
            "--on-error",
            "skip",
        ]
    )
    out, err = capsys.readouterr()
    assert (code, out, err) == (0, "", f"{path}: skipped 1 bad line(s)\n")
    records = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [(r["line"], r["text"]) for r in records] == [(1, "EU NNP I-NP B-ORG"), (2, "")]


def test_predict_refuses_binary_and_directories(capsys, tmp_path, tiny_run):
    path = BAD / "binary.bin"
    argv = ["predict", tiny_run, "--input", path, "--quiet"]
    assert one_line_error(capsys, argv) == f"{path}:1: not UTF-8 text"
    argv[3] = tmp_path
    assert one_line_error(capsys, argv) == f"{tmp_path}: is a directory, not a file"


# --- untidy but valid input -----------------------------------------------------------------

CLEAN = (
    "-DOCSTART- -X- -X- O\n\n"
    "EU NNP I-NP B-ORG\nrejects VBZ I-VP O\nGerman JJ I-NP B-MISC\ncall NN I-NP O\n\n"
    "Peter NNP I-NP B-PER\nBlackburn NNP I-NP I-PER\n\n"
    "BRUSSELS NNP I-NP B-LOC\n1996-08-22 CD I-NP O\n"
)
UNTIDY = (
    b"-DOCSTART- -X- -X- O\r\n\r\n"
    b"EU\tNNP\tI-NP\tB-ORG\r\nrejects VBZ  I-VP O   \r\nGerman JJ I-NP B-MISC\t\r\n"
    b"call NN I-NP O\r\n \t \r\n\r\n"
    b"  Peter NNP I-NP B-PER\nBlackburn NNP I-NP I-PER\n\n\n"
    b"BRUSSELS NNP I-NP B-LOC\r\n1996-08-22 CD I-NP O"  # no final newline
)


def test_untidy_input_just_works(capsys, tmp_path, tiny_run):
    clean, untidy = tmp_path / "clean.txt", tmp_path / "untidy.txt"
    clean.write_text(CLEAN, encoding="utf-8")
    untidy.write_bytes(UNTIDY)
    results = []
    for path in (clean, untidy):
        code = main(["evaluate", str(tiny_run), "--data", str(path), "--json"])
        out, err = capsys.readouterr()
        assert (code, err) == (0, "")
        results.append(json.loads(out))
    assert results[0] == results[1]
    assert results[0]["token"]["report"]["O"]["support"] == 3
    assert sum(t["support"] for t in results[0]["entity"]["per_type"].values()) == 4


def test_untidy_training_file(capsys, tmp_path, config):
    untidy = tmp_path / "untidy.txt"
    untidy.write_bytes(UNTIDY)
    code = main(
        [
            "train",
            str(config),
            "--train",
            str(untidy),
            "--dev",
            str(untidy),
            "--test",
            str(GOOD),
            "--output",
            str(tmp_path / "run"),
            "--quiet",
        ]
    )
    assert code == 0
    assert capsys.readouterr().err == ""
    vocab = json.loads((tmp_path / "run" / "vocab.json").read_text())
    assert {"eu", "peter", "0000-00-00"} <= set(vocab["words"]["items"])
    assert not any(w.strip() != w or not w for w in vocab["words"]["items"])


# --- behaviour that needs library changes -----------------------------------------------------

UNSEEN = BAD / "unseen_tag.txt"
BROKEN = BAD / "bioes_broken.txt"


def test_train_refuses_entity_types_training_never_saw(capsys, tmp_path, config):
    out = tmp_path / "run"
    argv = [
        "train",
        config,
        "--train",
        GOOD,
        "--dev",
        UNSEEN,
        "--test",
        GOOD,
        "--output",
        out,
        "--quiet",
    ]
    line = one_line_error(capsys, argv)
    assert re.fullmatch(rf"{re.escape(str(UNSEEN))}:11: .*\bLANG\b.*", line), line
    assert not out.exists()


def test_evaluate_refuses_entity_types_the_model_never_saw(capsys, tmp_path, tiny_run):
    predictions = tmp_path / "predictions.txt"
    argv = ["evaluate", tiny_run, "--data", UNSEEN, "--output", predictions]
    line = one_line_error(capsys, argv)
    assert re.fullmatch(rf"{re.escape(str(UNSEEN))}:11: .*\bLANG\b.*", line), line
    assert not predictions.exists()


def test_train_refuses_tags_that_break_the_file_scheme(capsys, tmp_path, config):
    out = tmp_path / "run"
    argv = [
        "train",
        config,
        "--train",
        BROKEN,
        "--dev",
        GOOD,
        "--test",
        GOOD,
        "--output",
        out,
        "--quiet",
    ]
    line = one_line_error(capsys, argv)
    assert re.fullmatch(rf"{re.escape(str(BROKEN))}:15: .*'I-ORG'.*\bBIOES\b.*", line), line
    assert not out.exists()


def test_evaluate_refuses_tags_that_break_the_file_scheme(capsys, tmp_path, tiny_run):
    predictions = tmp_path / "predictions.txt"
    argv = ["evaluate", tiny_run, "--data", BROKEN, "--output", predictions]
    line = one_line_error(capsys, argv)
    assert re.fullmatch(rf"{re.escape(str(BROKEN))}:15: .*'I-ORG'.*\bBIOES\b.*", line), line
    assert not predictions.exists()
