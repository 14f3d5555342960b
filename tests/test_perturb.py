"""Perturbations: exact outputs on hand-checked examples, tags preserved or re-laid."""

from __future__ import annotations

import pytest

from rnner import perturb
from rnner.conll import Sentence

EU = Sentence(
    ("EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."),
    ("B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"),
)
PETER = Sentence(("Peter", "Blackburn"), ("B-PER", "I-PER"), doc_id=1, line=12)


def test_recase_lower_upper_title():
    tokens = ["EU", "rejects", "mcDONALD", "1996-08-22", "'s", "straße"]
    assert perturb.recase(tokens, "lower") == [
        "eu",
        "rejects",
        "mcdonald",
        "1996-08-22",
        "'s",
        "straße",
    ]
    # 'straße'.upper() is 'STRASSE', one character longer: kept as it was
    assert perturb.recase(tokens, "upper") == [
        "EU",
        "REJECTS",
        "MCDONALD",
        "1996-08-22",
        "'S",
        "straße",
    ]
    assert perturb.recase(tokens, "title") == [
        "Eu",
        "Rejects",
        "Mcdonald",
        "1996-08-22",
        "'S",
        "Straße",
    ]
    with pytest.raises(ValueError, match="unknown case 'camel'"):
        perturb.recase(tokens, "camel")


def test_keyboard_neighbours():
    assert perturb.KEYBOARD["a"] == "qswz"
    assert perturb.KEYBOARD["g"] == "bfhtvy"
    assert perturb.KEYBOARD["p"] == "lo"
    assert all(k not in near for k, near in perturb.KEYBOARD.items())
    assert all(k in perturb.KEYBOARD[n] for k, near in perturb.KEYBOARD.items() for n in near)


def test_typo_exact_for_a_fixed_seed():
    rng = perturb.rng_for(3, "t")
    got = [perturb.typo(w, rng) for w in ["Germany", "Blackburn", "EU", "of", "Peter"]]
    # insert V (next to G, case kept) | swap a-c | delete U | insert t (next to f) | insert r
    assert got == ["GVermany", "Blcakburn", "E", "oft", "Perter"]


def _one_edit(a: str, b: str) -> str | None:
    """Which single edit turns a into b (None if none does)."""
    if len(b) == len(a) + 1 and any(a == b[:i] + b[i + 1 :] for i in range(len(b))):
        return "insert"
    if len(b) == len(a) - 1 and any(b == a[:i] + a[i + 1 :] for i in range(len(a))):
        return "delete"
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return "substitute"
        if (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        ):
            return "swap"
    return None


def test_typo_is_always_one_real_edit_and_never_empty():
    rng = perturb.rng_for(1, "many")
    seen = set()
    for word in ["of", "EU", "Leicestershire", "aa", "I'm", "Ölkonzern", "all-rounder"] * 300:
        new = perturb.typo(word, rng)
        edit = _one_edit(word, new)
        assert edit is not None, (word, new)
        assert new and not any(ch.isspace() for ch in new)
        seen.add(edit)
        if edit == "substitute":
            i = next(i for i in range(len(word)) if word[i] != new[i])
            if word[i].lower() in perturb.KEYBOARD:
                assert new[i].lower() in perturb.KEYBOARD[word[i].lower()]
            assert new[i].isupper() == word[i].isupper()
    assert seen == set(perturb.EDITS)


def test_add_typos_counts_the_rate_and_keeps_tags():
    out = perturb.add_typos([EU, PETER], 0.3, perturb.rng_for(5, "typos"))
    # 10 eligible words (not '.'); round(0.3 * 10) = 3 of them misspelt
    assert out[0].tokens == (
        "EU",
        "rejects",
        "Gertman",
        "calkl",
        "to",
        "boycott",
        "British",
        "lajb",
        ".",
    )
    assert out[1] is PETER
    assert [s.tags for s in out] == [EU.tags, PETER.tags]
    many = [EU] * 40
    for rate, expected in [(0.0, 0), (0.1, 32), (0.25, 80), (1.0, 320)]:
        got = perturb.add_typos(many, rate, perturb.rng_for(1, rate))
        changed = sum(
            a != b
            for s, t in zip(many, got, strict=True)
            for a, b in zip(s.tokens, t.tokens, strict=True)
        )
        assert changed == expected
    with pytest.raises(ValueError, match="typo rate 1.5"):
        perturb.add_typos(many, 1.5, perturb.rng_for(1))


def test_replace_mentions_relays_tags_iob2_and_bioes():
    s = Sentence(
        ("Peter", "Blackburn", "visited", "Bonn", "."),
        ("B-PER", "I-PER", "O", "B-LOC", "O"),
        doc_id=3,
        line=40,
    )
    pool = {"PER": [("Angela",)], "LOC": [("New", "York", "City")]}
    (out,) = perturb.replace_mentions([s], pool, "IOB2", perturb.rng_for(1))
    assert out.tokens == ("Angela", "visited", "New", "York", "City", ".")
    assert out.tags == ("B-PER", "O", "B-LOC", "I-LOC", "I-LOC", "O")
    assert (out.doc_id, out.line) == (3, 40)
    bioes = Sentence(s.tokens, ("B-PER", "E-PER", "O", "S-LOC", "O"))
    (out,) = perturb.replace_mentions([bioes], pool, "BIOES", perturb.rng_for(1))
    assert out.tags == ("S-PER", "O", "B-LOC", "I-LOC", "E-LOC", "O")


def test_replace_mentions_iob1_adjacent_and_missing_types():
    # IOB1: two adjacent PER mentions, the second opened by B-; ORG has no pool: kept
    s = Sentence(("Smith", "Jones", "of", "Reuters"), ("I-PER", "B-PER", "O", "I-ORG"))
    pool = {"PER": [("Ann", "Lee"), ("Bo",)]}
    (out,) = perturb.replace_mentions([s], pool, "IOB1", perturb.rng_for(2))
    assert out.tokens == ("Bo", "Ann", "Lee", "of", "Reuters")
    assert out.tags == ("I-PER", "B-PER", "I-PER", "O", "I-ORG")


def test_replace_mentions_avoids_the_same_mention():
    s = Sentence(("Bonn",), ("B-LOC",))
    pool = {"LOC": [("Bonn",), ("Paris",)]}
    outs = [
        perturb.replace_mentions([s], pool, "IOB2", perturb.rng_for(k))[0].tokens for k in range(20)
    ]
    assert set(outs) == {("Paris",)}


def test_unseen_mentions():
    train = [Sentence(("Peter", "Blackburn", "in", "Bonn"), ("B-PER", "I-PER", "O", "B-LOC"))]
    dev = [Sentence(("Bonn", "and", "Paris", "Peter"), ("B-ORG", "O", "B-LOC", "B-PER"))]
    # 'Bonn' is a training mention (of another type): seen; 'Peter' alone is not
    assert perturb.unseen_mentions(dev, "IOB2", train, "IOB2") == {
        "ORG": [],
        "LOC": [("Paris",)],
        "PER": [("Peter",)],
    }


def test_perturb_is_reproducible_and_seeded():
    sents = [EU, PETER] * 5
    a = perturb.perturb(sents, "typos", "IOB2", seed=1, typo_rate=0.5)
    assert a == perturb.perturb(sents, "typos", "IOB2", seed=1, typo_rate=0.5)
    assert a != perturb.perturb(sents, "typos", "IOB2", seed=2, typo_rate=0.5)
    assert perturb.perturb(sents, "upper", "IOB2", seed=1)[1].tokens == ("PETER", "BLACKBURN")
    with pytest.raises(ValueError, match="needs a pool"):
        perturb.perturb(sents, "mentions", "IOB2", seed=1)


def test_augment_epoch_is_deterministic_per_seed_and_epoch():
    sents = [EU, PETER] * 50
    kw = {"case": 0.5, "typos": 0.1, "mention_share": 0.5, "pool": perturb.mentions(sents, "IOB2")}
    a = perturb.augment_epoch(sents, "IOB2", 1, 1, **kw)
    assert a == perturb.augment_epoch(sents, "IOB2", 1, 1, **kw)
    assert a != perturb.augment_epoch(sents, "IOB2", 1, 2, **kw)
    assert a != perturb.augment_epoch(sents, "IOB2", 2, 1, **kw)
    assert perturb.augment_epoch(sents, "IOB2", 1, 1) == sents
    # every case changes this sentence, so the changed ones are exactly those drawn
    mixed = [Sentence(("Peter", "mcDonald", "said"), ("B-PER", "I-PER", "O"))] * 1000
    recased = perturb.augment_epoch(mixed, "IOB2", 1, 1, case=0.3)
    changed = [t.tokens for s, t in zip(mixed, recased, strict=True) if s != t]
    assert len(changed) == 316  # drawn with chance 0.3 each: 300 ± 14.5
    assert {c: changed.count(c) for c in set(changed)} == {
        ("peter", "mcdonald", "said"): 111,
        ("PETER", "MCDONALD", "SAID"): 97,
        ("Peter", "Mcdonald", "Said"): 108,
    }
    assert [s.tags for s in recased] == [s.tags for s in mixed]


@pytest.mark.parametrize("key", ["case", "typos", "mention_share"])
def test_each_augmentation_is_redrawn_per_epoch_and_seed(key):
    sents = [EU, PETER] * 50
    pool = perturb.mentions([*sents, Sentence(("Bonn",), ("B-ORG",))], "IOB2")
    kw = {key: 0.5, "pool": pool}
    a = perturb.augment_epoch(sents, "IOB2", 1, 1, **kw)
    assert a != sents
    assert a == perturb.augment_epoch(sents, "IOB2", 1, 1, **kw)
    assert a != perturb.augment_epoch(sents, "IOB2", 1, 2, **kw)
    assert a != perturb.augment_epoch(sents, "IOB2", 2, 1, **kw)


def _case_of(original: Sentence, s: Sentence) -> str:
    if s == original:
        return "clean"
    return next(c for c in perturb.CASES if list(s.tokens) == perturb.recase(original.tokens, c))


def test_case_by_document_cases_each_document_as_a_whole():
    # 400 documents of three sentences; every case changes each sentence
    sents = [
        Sentence(("Peter", "mcDonald", "said"), ("B-PER", "I-PER", "O"), doc_id=i // 3)
        for i in range(1200)
    ]
    out = perturb.augment_epoch(sents, "IOB2", 1, 1, case=0.5, case_unit="document")
    per_doc: dict[int, set[str]] = {}
    for s, t in zip(sents, out, strict=True):
        per_doc.setdefault(s.doc_id, set()).add(_case_of(s, t))
    assert all(len(cases) == 1 for cases in per_doc.values())
    kinds = [next(iter(c)) for c in per_doc.values()]
    assert {k: kinds.count(k) for k in set(kinds)} == {
        "clean": 202,
        "lower": 68,
        "upper": 65,
        "title": 65,
    }


def test_case_lower_share_weights_lower_casing():
    mixed = [Sentence(("Peter", "mcDonald", "said"), ("B-PER", "I-PER", "O"))] * 1000
    out = perturb.augment_epoch(mixed, "IOB2", 1, 1, case=0.6, case_lower=0.5)
    # 600 ± 15 recased, half of them lower-cased
    kinds = [_case_of(s, t) for s, t in zip(mixed, out, strict=True)]
    assert {k: kinds.count(k) for k in set(kinds)} == {
        "clean": 389,
        "lower": 330,
        "upper": 152,
        "title": 129,
    }
