import itertools
import random

import pytest

from rnner.tags import (
    SCHEMES,
    allowed_end,
    allowed_start,
    allowed_transitions,
    conlleval_chunks,
    convert,
    detect_scheme,
    from_spans,
    normalize_scheme,
    spans,
    split_tag,
    validate,
)

# One layout written in every scheme: PER PER adjacent (same type), then LOC, then MISC MISC
# adjacent, a one-token ORG at the very end.
LAYOUT = [
    ("PER", 0, 2),
    ("PER", 2, 3),
    ("LOC", 4, 5),
    ("MISC", 5, 7),
    ("MISC", 7, 8),
    ("ORG", 9, 10),
]
WRITTEN = {
    "IOB1": "I-PER I-PER B-PER O I-LOC I-MISC I-MISC B-MISC O I-ORG",
    "IOB2": "B-PER I-PER B-PER O B-LOC B-MISC I-MISC B-MISC O B-ORG",
    "BIOES": "B-PER E-PER S-PER O S-LOC B-MISC E-MISC S-MISC O S-ORG",
    "IOE1": "I-PER E-PER I-PER O I-LOC I-MISC E-MISC I-MISC O I-ORG",
    "IOE2": "I-PER E-PER E-PER O E-LOC I-MISC E-MISC E-MISC O E-ORG",
}


def random_layout(rng: random.Random, length: int) -> list[tuple[str, int, int]]:
    """Random non-overlapping spans, often adjacent and of the same type."""
    types = ["PER", "LOC", "B-X"]  # a type containing '-' too
    out, i = [], rng.randrange(2)
    while i < length:
        size = min(rng.choice([1, 1, 2, 3]), length - i)
        out.append((rng.choice(types), i, i + size))
        i += size + rng.choice([0, 0, 1, 2])
    return out


def test_split_tag():
    assert split_tag("O") == ("O", None)
    assert split_tag("B-PER") == ("B", "PER")
    assert split_tag("S-LOC") == ("S", "LOC")
    assert split_tag("I-B-X") == ("I", "B-X")  # only the first '-' separates


@pytest.mark.parametrize(
    ("tag", "message"),
    [
        ("X-PER", "unknown prefix 'X'"),
        ("O-PER", "unknown prefix 'O'"),
        ("B-", "malformed"),
        ("PER", "malformed"),
        ("", "malformed"),
        ("o", "malformed"),
    ],
)
def test_split_tag_errors(tag, message):
    with pytest.raises(ValueError, match=message):
        split_tag(tag)


def test_normalize_scheme():
    assert normalize_scheme("bio") == "IOB2"
    assert normalize_scheme("iobes") == "BIOES"
    assert normalize_scheme("ioe1") == "IOE1"
    with pytest.raises(ValueError, match="unknown tag scheme"):
        normalize_scheme("BILOU")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_spans_and_from_spans_on_reference_layout(scheme):
    tags = WRITTEN[scheme].split()
    assert spans(tags, scheme) == LAYOUT
    assert conlleval_chunks(tags) == LAYOUT
    assert from_spans(LAYOUT, len(tags), scheme) == tags
    assert validate(tags, scheme) is None


def test_spans_lenient_on_ill_formed_input():
    assert spans(["O", "I-PER", "I-LOC", "B-LOC"], "IOB2") == [
        ("PER", 1, 2),
        ("LOC", 2, 3),
        ("LOC", 3, 4),
    ]
    assert spans(["B-PER", "O", "E-PER", "I-PER"], "BIOES") == [
        ("PER", 0, 1),
        ("PER", 2, 3),
        ("PER", 3, 4),
    ]
    with pytest.raises(ValueError, match="unknown prefix"):
        spans(["B-PER", "Q-PER"], "IOB2")


def test_from_spans_rejects_bad_chunks():
    with pytest.raises(ValueError, match="overlaps"):
        from_spans([("PER", 0, 2), ("LOC", 1, 3)], 4, "IOB2")
    with pytest.raises(ValueError, match="outside"):
        from_spans([("PER", 2, 5)], 4, "IOB2")
    with pytest.raises(ValueError, match="outside"):
        from_spans([("PER", 1, 1)], 4, "IOB2")


@pytest.mark.parametrize(("src", "dst"), list(itertools.product(SCHEMES, SCHEMES)))
def test_convert_reference_layout(src, dst):
    assert convert(WRITTEN[src].split(), to=dst, source=src) == WRITTEN[dst].split()


def test_convert_round_trip_property():
    rng = random.Random(1234)
    for _ in range(300):
        length = rng.randrange(0, 12)
        layout = random_layout(rng, length)
        written = {s: from_spans(layout, length, s) for s in SCHEMES}
        for src, dst in itertools.product(SCHEMES, SCHEMES):
            converted = convert(written[src], to=dst, source=src)
            assert converted == written[dst], (layout, src, dst)
            assert spans(converted, dst) == layout
            assert conlleval_chunks(converted) == layout
        for scheme in SCHEMES:
            assert validate(written[scheme], scheme) is None, (layout, scheme)
            # Detected source gives the same result as the declared one.
            assert convert(written[scheme], to="IOB2") == written["IOB2"]
        if layout:
            for scheme in ("IOB1", "IOB2", "BIOES", "IOE2"):
                assert detect_scheme([written[scheme]]) == scheme, (layout, scheme)
            # IOE1 without adjacent same-type chunks has no E- and is spelt exactly like IOB1.
            expected = "IOE1" if any(t.startswith("E-") for t in written["IOE1"]) else "IOB1"
            assert detect_scheme([written["IOE1"]]) == expected


def test_detect_scheme():
    assert detect_scheme([["B-PER", "I-PER", "O"], ["B-LOC"]]) == "IOB2"
    assert detect_scheme([["I-PER", "I-PER", "O"], ["I-LOC", "B-LOC"]]) == "IOB1"
    assert detect_scheme([["I-PER", "O"], ["I-LOC"]]) == "IOB1"  # no B- at all
    assert detect_scheme([["I-PER", "O"], ["B-LOC"]]) == "IOB2"  # a B- after O is IOB2-only
    assert detect_scheme([["O", "S-PER"]]) == "BIOES"
    assert detect_scheme([["B-PER", "E-PER"]]) == "BIOES"
    assert detect_scheme([["I-PER", "E-PER", "I-PER", "O"]]) == "IOE1"
    assert detect_scheme([["I-PER", "E-PER", "E-PER", "O"]]) == "IOE2"
    assert detect_scheme([["O", "O"], []]) == "IOB2"
    assert detect_scheme([]) == "IOB2"
    with pytest.raises(TypeError):
        detect_scheme(["B-PER", "O"])  # a sentence instead of a list of sentences


@pytest.mark.parametrize(
    ("tags", "scheme", "expected"),
    [
        (["B-PER", "I-PER", "O", "B-LOC"], "IOB2", None),
        (["O", "I-PER"], "IOB2", 1),
        (["B-PER", "I-LOC"], "IOB2", 1),
        (["S-PER"], "IOB2", 0),
        (["I-PER", "I-PER", "B-PER"], "IOB1", None),
        (["O", "B-PER"], "IOB1", 1),
        (["B-PER"], "IOB1", 0),
        (["I-PER", "B-LOC"], "IOB1", 1),
        (["B-PER", "E-PER", "S-LOC", "O"], "BIOES", None),
        (["O", "I-PER", "E-PER"], "BIOES", 1),
        (["O", "E-PER"], "BIOES", 1),
        (["B-PER", "O"], "BIOES", 0),  # B- not followed by I-/E-
        (["B-PER", "B-PER", "E-PER"], "BIOES", 0),
        (["B-PER", "I-PER"], "BIOES", 1),  # runs off the end
        (["B-PER", "E-LOC"], "BIOES", 0),
        (["S-PER", "Z-PER"], "BIOES", 1),  # malformed tag reported itself
        (["B-PER", "Z-PER"], "BIOES", 1),
        (["I-PER", "E-PER", "I-PER"], "IOE1", None),
        (["E-PER", "O"], "IOE1", 0),
        (["I-PER", "B-PER"], "IOE1", 1),
        (["I-PER", "E-PER"], "IOE2", None),
        (["I-PER", "O"], "IOE2", 0),
        ([], "BIOES", None),
    ],
)
def test_validate(tags, scheme, expected):
    assert validate(tags, scheme) == expected


TAG_NAMES = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]


def test_allowed_transitions_bioes():
    names = TAG_NAMES
    ix = {t: i for i, t in enumerate(names)}
    allowed = set(allowed_transitions(names, "BIOES"))

    def ok(a, b):
        return (ix[a], ix[b]) in allowed

    assert ok("B-PER", "I-PER") and ok("B-PER", "E-PER") and ok("I-PER", "E-PER")
    assert ok("E-PER", "B-PER") and ok("S-PER", "S-PER") and ok("O", "S-LOC") and ok("O", "O")
    assert ok("E-PER", "O") and ok("S-LOC", "B-PER")
    assert not ok("B-PER", "O")
    assert not ok("O", "I-PER")
    assert not ok("O", "E-PER")
    assert not ok("B-PER", "I-LOC")
    assert not ok("I-PER", "B-PER")
    assert not ok("E-PER", "I-PER")
    assert [names[i] for i in allowed_start(names, "BIOES")] == [
        "O",
        "B-PER",
        "S-PER",
        "B-LOC",
        "S-LOC",
    ]
    assert [names[i] for i in allowed_end(names, "BIOES")] == [
        "O",
        "E-PER",
        "S-PER",
        "E-LOC",
        "S-LOC",
    ]


def test_allowed_transitions_iob():
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    iob2 = set(allowed_transitions(names, "IOB2"))
    assert (0, 2) not in iob2 and (3, 2) not in iob2 and (1, 2) in iob2 and (2, 2) in iob2
    assert (0, 1) in iob2 and (2, 3) in iob2
    assert allowed_start(names, "IOB2") == [0, 1, 3]
    assert allowed_end(names, "IOB2") == [0, 1, 2, 3, 4]
    iob1 = set(allowed_transitions(names, "IOB1"))
    assert (0, 2) in iob1 and (4, 2) in iob1  # I- may start a chunk
    assert (2, 1) in iob1 and (1, 1) in iob1  # B-PER only after a PER tag
    assert (0, 1) not in iob1 and (4, 1) not in iob1
    assert allowed_start(names, "IOB1") == [0, 2, 4]
    with pytest.raises(ValueError, match="not used by the IOB2 scheme"):
        allowed_transitions(["O", "S-PER"], "IOB2")
    with pytest.raises(ValueError, match="malformed"):
        allowed_start(["O", "<pad>"], "IOB2")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_allowed_transitions_agree_with_validate(scheme):
    prefixes = {"IOB1": "BI", "IOB2": "BI", "BIOES": "BIES", "IOE1": "IE", "IOE2": "IE"}[scheme]
    names = ["O"] + [f"{p}-{t}" for t in ("PER", "LOC") for p in prefixes]
    pairs = set(allowed_transitions(names, scheme))
    starts, ends = set(allowed_start(names, scheme)), set(allowed_end(names, scheme))
    rng = random.Random(7)
    seen_valid = seen_invalid = 0
    for _ in range(2000):
        seq = [rng.randrange(len(names)) for _ in range(rng.randrange(1, 6))]
        by_constraints = (
            seq[0] in starts
            and seq[-1] in ends
            and all(p in pairs for p in itertools.pairwise(seq))
        )
        is_valid = validate([names[i] for i in seq], scheme) is None
        assert by_constraints == is_valid, [names[i] for i in seq]
        seen_valid += is_valid
        seen_invalid += not is_valid
    assert seen_valid > 50 and seen_invalid > 50
