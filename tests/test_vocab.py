import json

import pytest

from rnner.vocab import PAD, UNK, Vocab, Vocabs, build_vocabs, word_key


@pytest.mark.parametrize(
    ("token", "lowercase", "key"),
    [
        ("Peter", True, "peter"),
        ("Peter", False, "Peter"),
        ("1996-08-22", True, "0000-00-00"),
        ("A4", True, "a0"),
        ("A4", False, "A0"),
        ("3.5", False, "0.0"),
        ("\u0663", False, "0"),  # ARABIC-INDIC DIGIT THREE is a digit too
        ("MÜNCHEN", True, "münchen"),
        (",", True, ","),
    ],
)
def test_word_key(token, lowercase, key):
    assert word_key(token, lowercase) == key


def test_vocab_ids_pad_unk():
    v = Vocab(["b", "a", "b", "c"])
    assert v.itos == [PAD, UNK, "b", "a", "c"]
    assert len(v) == 5
    assert v.id(PAD) == 0 and v.id(UNK) == 1
    assert v.id("b") == 2 and v.id("a") == 3 and v.id("c") == 4
    assert v.id("never seen") == 1
    assert v.unk_id == 1
    assert "a" in v and "z" not in v


def test_vocab_without_specials_has_no_unk():
    v = Vocab(["O", "B-PER"], specials=())
    assert v.itos == ["O", "B-PER"]
    assert v.id("B-PER") == 1
    assert v.unk_id is None
    with pytest.raises(KeyError):
        v.id("B-LOC")


def test_vocab_dict_round_trip():
    v = Vocab(["x", "y"])
    d = v.to_dict()
    assert d == {"specials": [PAD, UNK], "items": ["x", "y"]}
    back = Vocab.from_dict(json.loads(json.dumps(d)))
    assert back.itos == v.itos and back.stoi == v.stoi


def test_build_vocabs_words_chars_tags():
    tokens = [["EU", "rejects", "German", "call"], ["Peter", "eu", "1996"], ["eu", "1997"]]
    tags = [["S-ORG", "O", "S-MISC", "O"], ["B-PER", "E-PER", "O"], ["S-ORG", "O"]]
    v = build_vocabs(tokens, tags)
    # By frequency (eu 3, 0000 2), then alphabetically.
    assert v.words.itos == [PAD, UNK, "eu", "0000", "call", "german", "peter", "rejects"]
    assert v.chars.itos[:2] == [PAD, UNK]
    assert v.chars.itos[2:] == sorted(set("EUrejectsGermancallPetereu19961997"))
    # O first, then by type; within a type B, I, E, S.
    assert v.tags.itos == ["O", "S-MISC", "S-ORG", "B-PER", "E-PER"]
    assert v.tags.specials == ()
    assert v.word_id("EU") == 2
    assert v.word_id("2001") == 3
    assert v.word_id("Brussels") == 1


def test_tag_order_all_prefixes():
    v = build_vocabs([["a"] * 7], [["S-LOC", "E-LOC", "I-LOC", "B-LOC", "O", "I-ORG", "B-ORG"]])
    assert v.tags.itos == ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "B-ORG", "I-ORG"]


def test_build_vocabs_case_sensitive():
    v = build_vocabs([["EU", "eu", "Eu"]], [["O", "O", "O"]], lowercase=False)
    assert v.words.itos[2:] == ["EU", "Eu", "eu"]
    assert v.word_id("EU") != v.word_id("eu")
    assert v.word_id("eU") == 1


def test_build_vocabs_min_freq():
    tokens = [["a", "b", "a"], ["c", "a", "b"]]
    v = build_vocabs(tokens, [["O"] * 3] * 2, min_freq=2)
    assert v.words.itos == [PAD, UNK, "a", "b"]
    assert v.word_id("c") == 1
    # Characters of rare words are still known.
    assert "c" in v.chars


def test_build_vocabs_extra_words_are_normalised_and_appended():
    v = build_vocabs(
        [["Paris", "Paris"]],
        [["S-LOC", "S-LOC"]],
        extra_words=["London", "paris", "2012", "Berlin", "london"],
    )
    # Training words first; extras sorted after, normalised, without duplicates.
    assert v.words.itos == [PAD, UNK, "paris", "0000", "berlin", "london"]
    # Extras add no characters: only training text defines the character set.
    assert "L" not in v.chars and "B" not in v.chars


def test_extra_words_pass_min_freq():
    v = build_vocabs([["x"]], [["O"]], min_freq=2, extra_words=["x"])
    assert v.words.itos == [PAD, UNK, "x"]


def test_vocabs_json_round_trip():
    v = build_vocabs([["EU", "rejects", "Ärger"]], [["S-ORG", "O", "O"]], lowercase=False)
    back = Vocabs.from_dict(json.loads(json.dumps(v.to_dict(), ensure_ascii=False)))
    assert back.lowercase is False
    assert back.words.itos == v.words.itos
    assert back.chars.itos == v.chars.itos
    assert back.tags.itos == v.tags.itos == ["O", "S-ORG"]
    assert back.tags.unk_id is None
    for token in ("EU", "eu", "Ärger", "zzz"):
        assert back.word_id(token) == v.word_id(token)
