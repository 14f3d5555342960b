import numpy as np
import pytest
import torch

from rnner.batching import (
    CASING,
    MAX_WORD_CHARS,
    batch_indices,
    casing_class,
    encode,
    iterate,
    length_buckets,
    make_batch,
)
from rnner.vocab import build_vocabs

SENTS = [
    ["EU", "rejects", "German", "call", "."],
    ["Peter", "Blackburn"],
    ["EU", "rejects", "1996"],
    ["Brussels"],
]
TAGS = [
    ["S-ORG", "O", "S-MISC", "O", "O"],
    ["B-PER", "E-PER"],
    ["S-ORG", "O", "O"],
    ["S-LOC"],
]


@pytest.fixture
def vocabs():
    return build_vocabs(SENTS, TAGS)


def spell(batch, vocabs, b: int, t: int) -> str:
    row = int(batch.char_index[b, t])
    n = int(batch.char_lengths[row])
    return "".join(vocabs.chars.itos[int(c)] for c in batch.chars[row, :n])


def test_encode_table_and_flat_arrays(vocabs):
    data = encode(SENTS, vocabs, TAGS)
    assert len(data) == 4
    assert data.lengths.tolist() == [5, 2, 3, 1]
    assert data.offsets.tolist() == [0, 5, 7, 10]
    # Distinct tokens get one table row each (row 0 is padding), in order of appearance.
    assert data.tokens.tolist() == [1, 2, 3, 4, 5, 6, 7, 1, 2, 8, 9]
    assert data.table.words.shape == (10,)
    assert data.table.words[0] == 0
    assert data.table.words[1] == vocabs.word_id("EU")
    assert data.table.casing[1] == CASING.index("upper")
    assert data.table.chars.shape == (10, len("Blackburn"))
    assert data.table.char_lengths.tolist() == [0, 2, 7, 6, 4, 1, 5, 9, 4, 8]
    assert [vocabs.tags.itos[i] for i in data.tags] == [t for ts in TAGS for t in ts]


def test_encode_without_tags_and_empty(vocabs):
    data = encode(SENTS, vocabs)
    assert data.tags is None
    empty = encode([], vocabs)
    assert len(empty) == 0 and empty.tokens.shape == (0,)


def test_long_tokens_are_cut_and_unknown_chars_are_unk(vocabs):
    long = "x" * (MAX_WORD_CHARS + 25)
    data = encode([[long, "€"]], vocabs)
    assert data.table.chars.shape == (3, MAX_WORD_CHARS)
    assert data.table.char_lengths.tolist() == [0, MAX_WORD_CHARS, 1]
    assert data.table.chars[2, 0] == vocabs.chars.unk_id == 1
    assert data.table.words[2] == 1  # unknown word


def test_make_batch_shapes_mask_padding(vocabs):
    data = encode(SENTS, vocabs, TAGS)
    b = make_batch(data, np.array([1, 0, 3]))
    assert b.index.tolist() == [1, 0, 3]
    assert b.lengths.tolist() == [2, 5, 1]
    assert b.num_tokens == 8
    for name in ("mask", "words", "casing", "char_index", "tags"):
        assert getattr(b, name).shape == (3, 5), name
    assert b.mask.dtype == torch.bool
    assert b.mask.tolist() == [
        [True, True, False, False, False],
        [True, True, True, True, True],
        [True, False, False, False, False],
    ]
    assert b.words[0].tolist()[:2] == [vocabs.word_id("Peter"), vocabs.word_id("Blackburn")]
    # Padding is 0 everywhere.
    for name in ("words", "casing", "tags"):
        assert getattr(b, name)[~b.mask].eq(0).all(), name
    assert b.tags[2, 0] == vocabs.tags.id("S-LOC")
    assert b.casing[1].tolist() == [2, 1, 3, 1, 7]
    # One character row per distinct token in the batch (plus the padding row).
    assert b.chars.shape[0] == b.char_lengths.shape[0] == 1 + 8
    assert b.chars.dtype == torch.int64


def test_char_index_spells_every_token(vocabs):
    data = encode(SENTS, vocabs, TAGS)
    b = make_batch(data, np.arange(4))
    for i, sent in enumerate(SENTS):
        assert [spell(b, vocabs, i, t) for t in range(len(sent))] == sent
        # Padding positions point at the empty padding row.
        for t in range(len(sent), b.mask.shape[1]):
            assert spell(b, vocabs, i, t) == ""
    # A repeated token shares its row.
    assert b.char_index[0, 0] == b.char_index[2, 0]


def test_batch_to_keeps_missing_tags(vocabs):
    b = make_batch(encode(SENTS, vocabs), np.array([0]))
    moved = b.to("cpu")
    assert moved.tags is None
    assert torch.equal(moved.words, b.words)


def test_batch_indices_sorted_without_rng():
    lengths = np.array([5, 1, 3, 3, 9, 2, 7])
    chunks = batch_indices(lengths, 3)
    assert [c.tolist() for c in chunks] == [[1, 5, 2], [3, 0, 6], [4]]
    flat = np.concatenate(chunks)
    assert sorted(flat.tolist()) == list(range(7))
    assert lengths[flat].tolist() == sorted(lengths.tolist())


def test_batch_indices_with_rng_cover_everything_once():
    rng_lengths = np.random.default_rng(3).integers(1, 40, size=103)
    chunks = batch_indices(rng_lengths, 10, np.random.default_rng(0))
    flat = np.concatenate(chunks)
    assert len(flat) == 103 and sorted(flat.tolist()) == list(range(103))
    assert sorted(len(c) for c in chunks) == [3] + [10] * 10
    # Nearly sorted: noise of at most 2 may only swap lengths that differ by less than 2.
    for c in chunks:
        assert np.ptp(rng_lengths[c]) <= 12
    again = batch_indices(rng_lengths, 10, np.random.default_rng(0))
    assert [c.tolist() for c in again] == [c.tolist() for c in chunks]
    other = batch_indices(rng_lengths, 10, np.random.default_rng(1))
    assert [c.tolist() for c in other] != [c.tolist() for c in chunks]


def test_iterate_yields_every_sentence_once(vocabs):
    data = encode(SENTS, vocabs, TAGS)
    seen = [i for b in iterate(data, 3) for i in b.index.tolist()]
    assert sorted(seen) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("token", "name"),
    [
        ("rejects", "lower"),
        ("EU", "upper"),
        ("Peter", "title"),
        ("München", "title"),
        ("eBay", "mixed"),
        ("McDonald", "mixed"),
        ("1996", "numeric"),
        ("A4", "has_digit"),
        ("1996-08-22", "has_digit"),
        ("3.5", "has_digit"),
        (",", "punct"),
        ("...", "punct"),
        ("U.S.", "other"),
        ("don't", "other"),
        ("E-mail", "other"),
    ],
)
def test_casing_class(token, name):
    assert CASING[casing_class(token)] == name


def test_document_units_pack_sentences_of_one_document_up_to_the_budget():
    from rnner.batching import join_units, split_units, units

    docs, lengths = [0, 0, 0, 1, 1, 2], [3, 4, 5, 2, 2, 9]
    assert units(docs, lengths, "sentence", 8) == [[0], [1], [2], [3], [4], [5]]
    groups = units(docs, lengths, "document", 8)
    assert groups == [[0, 1], [2], [3, 4], [5]]  # never across documents or over 8 tokens
    sents = [[f"s{i}t{j}" for j in range(n)] for i, n in enumerate(lengths)]
    joined = join_units(sents, groups)
    assert [len(u) for u in joined] == [7, 5, 4, 9]
    assert split_units(joined, groups, lengths) == sents


def test_length_buckets_cut_where_lengths_jump():
    # Sorted: 3 3 4 58 60. One batch costs 64 + 60 * (5 + 4) = 604; cut before 58:
    # 64 + 4 * (3 + 4) + 64 + 60 * (2 + 4) = 516; cut also before 4: 590.
    lengths = np.array([3, 60, 4, 3, 58])
    assert [c.tolist() for c in length_buckets(lengths, 256)] == [[0, 3, 2], [4, 1]]
    # Similar lengths stay together: a cut would cost more fixed cost than padding saves.
    assert [c.tolist() for c in length_buckets(np.array([9, 10, 8]), 256)] == [[2, 0, 1]]
    # The cap splits a run of equal lengths into even parts.
    assert [len(c) for c in length_buckets(np.full(10, 5), 4)] == [4, 3, 3]


def test_length_buckets_cover_everything_once_within_the_cap():
    lengths = np.random.default_rng(3).integers(1, 80, size=300)
    chunks = length_buckets(lengths, 64)
    flat = np.concatenate(chunks)
    assert sorted(flat.tolist()) == list(range(300))
    assert lengths[flat].tolist() == sorted(lengths.tolist())
    assert max(len(c) for c in chunks) <= 64

    # cheaper than the plain sorted chunks it replaces, under its own cost model
    def cost(cs):
        return sum(16 + lengths[c].max() * (len(c) + 4) for c in cs)

    assert cost(chunks) < cost(batch_indices(lengths, 64))
