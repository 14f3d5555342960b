"""Routed model directories: two models behind one Tagger, picked per document by the case of
its words (rnner.routing), their file format and its errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rnner import routing
from rnner.cli import main
from rnner.errors import RunDirError
from rnner.predict import RoutedTagger, Tagger
from rnner.runs import export_routed, load_run

ROOT = Path(__file__).resolve().parents[1]


def test_case_counts_by_hand() -> None:
    # lower: visited, in; capitalised: Peter (Title), McDonald (mIxed); UPPER: NYC.
    # Not words: 1996 (digits), U.S. (dots), "-" (punctuation).
    tokens = ["Peter", "McDonald", "visited", "NYC", "in", "1996", "U.S.", "-"]
    assert routing.case_counts(tokens) == (2, 2, 1)


@pytest.mark.parametrize(
    ("sentences", "expected"),
    [
        ([["Peter", "Blackburn", "visited", "Brussels", "."], ["He", "left", "."]], "cased"),
        # one sentence: the caseless model, whatever its case
        ([["Peter", "Blackburn", "visited", "Brussels", "."]], "caseless"),
        ([["Peter", "Blackburn", "visited", "Brussels", "."], []], "caseless"),
        ([["angela", "merkel", "met", "macron", "."], ["in", "paris", "."]], "caseless"),
        ([["ANGELA", "MERKEL", "MET", "MACRON", "."], ["IN", "PARIS", "."]], "caseless"),
        ([["Angela", "Merkel", "Met", "Macron", "."], ["In", "Paris", "."]], "caseless"),
        ([["1996-08-22", "."], ["6-4", "."]], "caseless"),  # no words: nothing says it has case
        ([], "caseless"),
        # 1 of 5 sentences of 3+ words all lower-case: a fifth, still cased
        ([["Ann", "saw", "Bob", "."]] * 4 + [["and", "then", "left", "."]], "cased"),
        # 2 of 5: text typed partly without case
        ([["Ann", "saw", "Bob", "."]] * 3 + [["and", "then", "left", "."]] * 2, "caseless"),
        # an all-lower sentence of 2 words does not count
        ([["Ann", "saw", "Bob", "."]] * 3 + [["and", "left", "."]] * 2, "cased"),
    ],
)
def test_route_by_hand(sentences: list[list[str]], expected: str) -> None:
    assert routing.route(sentences) == expected


def test_min_share_is_a_share_of_the_words() -> None:
    # 1 lower-case word in 60 (1.7 %) is under 2 %: no case; 2 in 60 (3.3 %) is over it
    title = ["Ann"] * 59
    assert routing.route([title, ["saw"]]) == "caseless"
    assert routing.route([title[:-1], ["saw", "met"]]) == "cased"
    assert routing.route([title, ["saw"]], min_share=0.01) == "cased"
    assert routing.route([title + ["saw", "met"]]) == "caseless"  # one sentence
    assert routing.route([title + ["saw", "met"]], min_sentences=1) == "cased"


@pytest.fixture
def routed(tiny_run: Path, tmp_path: Path) -> Path:
    return export_routed(tiny_run, tiny_run, tmp_path / "routed")


def test_routed_tagger_sends_each_document_to_its_model(routed: Path, monkeypatch) -> None:
    tagger = Tagger.load(routed)
    assert isinstance(tagger, RoutedTagger)
    assert set(tagger.taggers) == {"cased", "caseless"}
    calls: dict[str, list[list[int]]] = {"cased": [], "caseless": []}

    def stub(name: str):
        def tag(sentences, batch_size=256, doc_ids=None):
            calls[name].append(list(doc_ids))
            return [[name] * len(s) for s in sentences]

        return tag

    for name, sub in tagger.taggers.items():
        monkeypatch.setattr(sub, "tag", stub(name))
    sentences = [
        ["Peter", "Blackburn", "visited", "Brussels"],  # doc 7: cased
        ["paris", "is", "in", "france"],  # doc 3: lower-case
        ["He", "left", "."],  # doc 7 again, after doc 3
        ["PARIS", "IS", "IN", "FRANCE"],  # doc 5: UPPER
    ]
    got = tagger.tag(sentences, doc_ids=[7, 3, 7, 5])
    assert got == [["cased"] * 4, ["caseless"] * 4, ["cased"] * 3, ["caseless"] * 4]
    assert calls == {"cased": [[7, 7]], "caseless": [[3, 5]]}


def test_routed_tagger_tags_as_its_models_do(routed: Path, tiny_run: Path) -> None:
    """With the same run as both models, routing changes nothing: tags equal the run's own,
    in the input's order, on real text of both kinds."""
    plain, tagger = Tagger.load(tiny_run), Tagger.load(routed)
    texts = [
        "Peter Blackburn of the European Commission visited Brussels on Monday.",
        "peter blackburn visited brussels on monday.",
        "EU rejects German call to boycott British lamb.",
    ]
    assert tagger.predict_text(texts) == plain.predict_text(texts)
    assert tagger.meta["router"]["min_share"] == 0.02


def test_router_file_is_checked(routed: Path) -> None:
    f = routed / "router.json"
    good = json.loads(f.read_text())
    for change, message in [
        ({"format": "something"}, 'not a router file (expected "format": "rnner-case-router")'),
        ({"version": 2}, "router version 2 is not supported (1)"),
        ({"min_share": 0.9}, "min_share must be a number in [0, 0.5], not 0.9"),
        ({"max_lower_sentences": "a fifth"}, "max_lower_sentences must be a number in [0, 1.0]"),
        ({"min_sentences": 0}, "min_sentences must be a whole number of 1 or more, not 0"),
    ]:
        f.write_text(json.dumps(good | change))
        with pytest.raises(RunDirError) as e:
            Tagger.load(routed)
        assert str(e.value).startswith(f"{f}: {message}"), str(e.value)
    f.write_text("{")
    with pytest.raises(RunDirError, match=r"router.json: not valid JSON"):
        Tagger.load(routed)
    f.write_text(json.dumps(good))
    shutil.rmtree(routed / "caseless")
    with pytest.raises(RunDirError) as e:
        Tagger.load(routed)
    assert str(e.value) == f"{f}: its caseless model ({routed / 'caseless'}) is missing"


def test_a_routed_directory_is_no_run_directory(routed: Path) -> None:
    with pytest.raises(RunDirError) as e:
        load_run(routed)
    assert str(e.value) == (
        f"{routed}: a routed model (two models, router.json), not one run directory: name one "
        f"of them ({routed / 'cased'}, {routed / 'caseless'})"
    )


def test_models_with_other_tags_are_refused(run_copy: Path, tiny_run: Path, tmp_path) -> None:
    meta = json.loads((run_copy / "run.json").read_text())
    meta["source_scheme"] = "IOB1"
    (run_copy / "run.json").write_text(json.dumps(meta))
    with pytest.raises(RunDirError) as e:
        export_routed(tiny_run, run_copy, tmp_path / "out")
    assert str(e.value).startswith(f"{run_copy}: its tags or scheme differ from {tiny_run}'s")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_export_refuses_bad_thresholds_before_writing(tiny_run: Path, tmp_path, capsys) -> None:
    out = tmp_path / "routed"
    argv = ["export", str(tiny_run), str(out), "--caseless", str(tiny_run), "--min-share", "0.7"]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"{out}: min_share must be a number in [0, 0.5], not 0.7\n"
    assert not out.exists()


def test_export_cli_builds_and_reexports_a_routed_model(tiny_run: Path, tmp_path, capsys) -> None:
    out = tmp_path / "routed"
    code = main(["export", str(tiny_run), str(out), "--caseless", str(tiny_run)])
    assert code == 0
    assert capsys.readouterr().out.startswith(
        f"exported {tiny_run} (cased) and {tiny_run} (caseless) to {out} ("
    )
    again = tmp_path / "again"
    assert main(["export", str(out), str(again)]) == 0
    for name in ("cased/model.safetensors", "caseless/model.safetensors"):
        assert (again / name).read_bytes() == (out / name).read_bytes()
    router = json.loads((again / "router.json").read_text())
    assert (router["min_share"], router["max_lower_sentences"], router["min_sentences"]) == (
        0.02,
        0.2,
        2,
    )


def test_the_shipped_model_reads_text_without_case() -> None:
    """The issue's example: lower-cased names are found (the first shipped model found none)."""
    tagger = Tagger.load(ROOT / "models" / "conll03-en")
    assert isinstance(tagger, RoutedTagger)
    found = {
        (s.label, s.text) for s in tagger.predict("angela merkel met emmanuel macron in paris")
    }
    assert {("PER", "emmanuel macron"), ("LOC", "paris")} <= found
