"""What the shipped model (models/conll03-en) finds, not just the shape of its output.

Sentences from CoNLL-2003 dev (the split the model was selected on, never trained on) whose
gold entities were checked by hand; the model gets every one of them right, through
`rnner predict` without a run directory (CoNLL and raw-text input) and through `Tagger`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CONLL, needs_conll

from rnner import Tagger
from rnner.cli import main

# (dev.txt line of the first token, tokens, entities as (label, text)), all checked by hand:
# county cricket clubs and baseball teams are ORG in CoNLL-2003, nationalities MISC.
SENTENCES = [
    (
        18,
        "West Indian all-rounder Phil Simmons took four for 38 on Friday as Leicestershire "
        "beat Somerset by an innings and 39 runs in two days to take over at the head of the "
        "county championship .",
        [
            ("MISC", "West Indian"),
            ("PER", "Phil Simmons"),
            ("ORG", "Leicestershire"),
            ("ORG", "Somerset"),
        ],
    ),
    (
        54,
        "Their stay on top , though , may be short-lived as title rivals Essex , Derbyshire "
        "and Surrey all closed in on victory while Kent made up for lost time in their "
        "rain-affected match against Nottinghamshire .",
        [
            ("ORG", "Essex"),
            ("ORG", "Derbyshire"),
            ("ORG", "Surrey"),
            ("ORG", "Kent"),
            ("ORG", "Nottinghamshire"),
        ],
    ),
    (814, "Scotland .", [("LOC", "Scotland")]),
    (1463, "Attendance : 200", []),
    (3133, "SAN DIEGO 75 60 .556 -", [("ORG", "SAN DIEGO")]),
    (
        15254,
        "The Southeast Asian gold market was more or less a photo-fit picture of the "
        "previous week 's position with activity slow and bullion prices trapped in a "
        "well-worn range awaiting a seasonal upturn in demand and prices into the fourth "
        "quarter .",
        [("MISC", "Southeast Asian")],
    ),
    (33158, "Port Vale 4 1 2 1 4 4 5", [("ORG", "Port Vale")]),
    (49570, "Chinese police hold veteran dissident .", [("MISC", "Chinese")]),
]
TEXTS = [tokens for _, tokens, _ in SENTENCES]
EXPECTED = [entities for _, _, entities in SENTENCES]


def test_the_sentences_are_dev_sentences_with_these_gold_entities():
    """The expectations are CoNLL-2003's own annotation, not the model's output copied."""
    from rnner.conll import read_conll
    from rnner.tags import spans

    needs_conll()
    by_line = {s.line: s for s in read_conll(CONLL / "dev.txt")}
    for line, text, entities in SENTENCES:
        s = by_line[line]
        assert " ".join(s.tokens) == text
        gold = [(label, " ".join(s.tokens[a:b])) for label, a, b in spans(s.tags, "IOB2")]
        assert gold == entities


def _cli(capsys: pytest.CaptureFixture[str], *argv: object) -> str:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    return out


def test_predict_without_a_run_directory_tags_conll_input_with_the_shipped_model(
    capsys, tmp_path: Path
):
    source = tmp_path / "dev.conll"
    source.write_text("\n\n".join("\n".join(t.split()) for t in TEXTS) + "\n", encoding="utf-8")
    out = _cli(capsys, "predict", "--input", source, "--format", "conll", "--quiet")
    blocks = [b.splitlines() for b in out.strip("\n").split("\n\n")]
    assert len(blocks) == len(SENTENCES)
    for rows, text, entities in zip(blocks, TEXTS, EXPECTED, strict=True):
        tokens = [r.split()[0] for r in rows]
        tags = [r.split()[1] for r in rows]
        assert tokens == text.split()
        found = []
        for i, tag in enumerate(tags):  # IOB2, the scheme of the model's training file
            if tag.startswith("B-"):
                end = i + 1
                while end < len(tags) and tags[end] == "I-" + tag[2:]:
                    end += 1
                found.append((tag[2:], " ".join(tokens[i:end])))
            else:
                assert tag == "O" or tags[i - 1][2:] == tag[2:], (text, tags)
        assert found == entities


def test_predict_without_a_run_directory_finds_entities_in_raw_text(capsys, tmp_path: Path):
    source = tmp_path / "dev.txt"
    source.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    out = _cli(capsys, "predict", "--input", source, "--quiet")
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["text"] for r in records] == TEXTS
    for r, entities in zip(records, EXPECTED, strict=True):
        assert [(s["label"], s["text"]) for s in r["spans"]] == entities
        for s in r["spans"]:
            assert r["text"][s["start"] : s["end"]] == s["text"]


def test_tagger_api_finds_the_same_entities():
    tagger = Tagger.load()  # the shipped model
    for text, entities in zip(TEXTS, EXPECTED, strict=True):
        spans = tagger.predict(text)
        assert [(s.label, s.text) for s in spans] == entities
        assert all(text[s.start : s.end] == s.text for s in spans)
    # Token input, in the file's scheme.
    assert tagger.tag([["Port", "Vale", "4"], ["Scotland", "."]]) == [
        ["B-ORG", "I-ORG", "O"],
        ["B-LOC", "O"],
    ]


# Of the sentences above, those the shipped model also gets right with their case removed
# (checked on each: the other two lose or gain a MISC, "Southeast Asian" and "county
# championship").
CASELESS_LINES = {54, 814, 1463, 3133, 33158, 49570}


@pytest.mark.parametrize("case", [str.lower, str.upper])
def test_the_same_sentences_without_case(case) -> None:
    """Lower- or UPPER-cased, a text goes to the shipped model's caseless model
    (docs/robustness.md), which finds the same entities in it."""
    tagger = Tagger.load()
    for line, text, entities in SENTENCES:
        if line not in CASELESS_LINES:
            continue
        spans = tagger.predict(case(text))
        assert [(s.label, s.text) for s in spans] == [(label, case(t)) for label, t in entities]
