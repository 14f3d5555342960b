import pickle
from pathlib import Path

import pytest
from conftest import CONLL

from rnner.conll import (
    InputError,
    Sentence,
    format_conll,
    parse_conll,
    read_conll,
    write_conll,
)
from rnner.files import write_bytes, write_text

DATA = Path(__file__).parent / "data"
BAD = DATA / "bad"
TRAIN = CONLL / "train.txt"


def error_of(path: Path, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        read_conll(path, **kwargs)
    return str(info.value)


def test_untidy_input(tmp_path: Path) -> None:
    raw = (
        b"EU\tNNP  I-NP\tB-ORG  \r\n"
        b"rejects VBZ I-VP O\r\n"
        b"\r\n"
        b"  \t \n"
        b"\n"
        b"Peter NNP I-NP B-PER\n"
        b"Blackburn NNP I-NP I-PER"  # no final newline
    )
    path = tmp_path / "untidy.txt"
    write_bytes(path, raw)
    assert read_conll(path) == [
        Sentence(("EU", "rejects"), ("B-ORG", "O"), doc_id=0, line=1),
        Sentence(("Peter", "Blackburn"), ("B-PER", "I-PER"), doc_id=0, line=6),
    ]


def test_no_break_space_is_not_a_separator() -> None:
    (sent,) = parse_conll(["New\u00a0York B-LOC\n"])
    assert sent.tokens == ("New\u00a0York",)


def test_doc_ids_and_lines() -> None:
    sents = read_conll(DATA / "good" / "small.txt")
    assert [(s.doc_id, s.line, len(s)) for s in sents] == [(0, 3, 5), (0, 9, 2), (1, 14, 2)]
    assert sents[2].tokens == ("München", "1996-08-22")
    assert sents[2].tags == ("B-LOC", "O")


def test_sentences_before_first_docstart_are_doc_0() -> None:
    lines = ["a O", "", "-DOCSTART- -X- -X- O", "", "b O", "", "-DOCSTART- -X- -X- O", "c O"]
    assert [(s.tokens, s.doc_id) for s in parse_conll(lines)] == [
        (("a",), 0),
        (("b",), 1),
        (("c",), 2),
    ]


def test_unlabelled_and_columns() -> None:
    (sent,) = parse_conll(["EU NNP", "rejects VBZ"], labelled=False)
    assert sent.tags is None and sent.tokens == ("EU", "rejects")
    (sent,) = parse_conll(["x EU B-ORG", "y rejects O"], word_column=1, tag_column=2)
    assert sent.tokens == ("EU", "rejects") and sent.tags == ("B-ORG", "O")
    (sent,) = parse_conll(["EU"], labelled=False)
    assert sent.tokens == ("EU",)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("wrong_columns.txt", ":1: expected at least 2 columns (word and tag), found 1"),
        ("varying_columns.txt", ":7: expected 4 columns, found 3"),
        ("unknown_prefix.txt", ":4: unknown tag prefix 'X' in 'X-PER'"),
        ("empty.txt", ": no sentences found"),
        ("only_docstart.txt", ": no sentences found"),
        ("not_utf8.txt", ":3: not UTF-8 text: byte 0xfc at offset 20"),
        ("binary.bin", ":2: binary data: byte 0x1a at offset 6"),
    ],
)
def test_bad_files(name: str, expected: str) -> None:
    assert error_of(BAD / name) == f"{BAD / name}{expected}"


def test_error_attributes_and_pickle() -> None:
    with pytest.raises(InputError) as info:
        read_conll(BAD / "unknown_prefix.txt")
    err = info.value
    assert (err.path, err.line) == (str(BAD / "unknown_prefix.txt"), 4)
    assert err.message == "unknown tag prefix 'X' in 'X-PER'"
    assert str(pickle.loads(pickle.dumps(err))) == str(err)
    assert str(InputError(None, None, "m")) == "m"
    assert str(InputError(None, 3, "m")) == "line 3: m"


def test_malformed_tag() -> None:
    with pytest.raises(InputError, match=r"^<input>:2: invalid tag 'PER'"):
        list(parse_conll(["a O", "b PER"]))


def test_nul_in_lines() -> None:
    with pytest.raises(InputError, match=r"^<input>:1: binary data"):
        list(parse_conll(["a\x00 O"]))


def test_long_sentence(tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    write_text(path, "\n" + "w O\n" * 11)
    assert error_of(path, max_tokens=10) == (
        f"{path}:12: sentence starting at line 2 exceeds 10 tokens"
    )
    assert len(read_conll(path, max_tokens=11)[0]) == 11
    assert len(read_conll(path, max_tokens=None)[0]) == 11


def test_long_token(tmp_path: Path) -> None:
    path = tmp_path / "long.txt"
    write_text(path, "a O\n" + "x" * 1001 + " O\n")
    assert error_of(path) == f"{path}:2: token of 1001 characters exceeds the limit of 1000"


def test_utf16_and_bom(tmp_path: Path) -> None:
    path = tmp_path / "u16.txt"
    write_bytes(path, "a O\n".encode("utf-16"))
    assert error_of(path) == f"{path}:1: UTF-16 text: save the file as UTF-8"
    write_bytes(path, "\ufeffa O\n".encode())
    assert read_conll(path)[0].tokens == ("a",)


def test_missing_and_directory(tmp_path: Path) -> None:
    assert error_of(tmp_path / "nope.txt") == f"{tmp_path / 'nope.txt'}: no such file"
    assert error_of(tmp_path) == f"{tmp_path}: is a directory"


def test_round_trip(tmp_path: Path) -> None:
    sents = read_conll(DATA / "good" / "small.txt")
    out = tmp_path / "out.txt"
    write_conll(out, sents)
    assert read_conll(out) == [
        Sentence(s.tokens, s.tags, s.doc_id, line)
        for s, line in zip(sents, (3, 9, 14), strict=True)
    ]
    preds = [["O"] * len(s) for s in sents]
    write_conll(out, sents, preds)
    again = read_conll(out)
    assert [s.tokens for s in again] == [s.tokens for s in sents]
    assert all(set(s.tags) == {"O"} for s in again)
    assert out.read_text().splitlines()[2] == "EU B-ORG O"


def test_format_unlabelled_single_document() -> None:
    sents = [Sentence(("a", "b"), None), Sentence(("c",), None)]
    assert "".join(format_conll(sents)) == "a\nb\n\nc\n\n"
    assert "".join(format_conll(sents, [["B-X", "I-X"], ["O"]])) == "a B-X\nb I-X\n\nc O\n\n"


@pytest.mark.parametrize("token", ["a b", "", "-DOCSTART-", "a\tb"])
def test_format_rejects_unwritable_tokens(token: str) -> None:
    with pytest.raises(ValueError):
        list(format_conll([Sentence((token,), ("O",))]))


def test_format_checks_prediction_lengths() -> None:
    with pytest.raises(ValueError):
        list(format_conll([Sentence(("a",), ("O",))], [["O", "O"]]))
    with pytest.raises(ValueError):
        list(format_conll([Sentence(("a",), ("O",))], []))


def test_sentence_checks_lengths() -> None:
    with pytest.raises(ValueError):
        Sentence(("a", "b"), ("O",))


@pytest.mark.skipif(not TRAIN.is_file(), reason="CoNLL-2003 data not available")
def test_real_train_file() -> None:
    sents = read_conll(TRAIN)
    assert len(sents) == 14041
    assert sum(map(len, sents)) == 203621
    assert len({s.doc_id for s in sents}) == 946
    assert sents[0].tokens[0] == "EU" and sents[0].line == 3
