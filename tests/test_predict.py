import pytest

from rnner import Span, Tagger
from rnner.errors import RunDirError
from rnner.predict import split_sentences, tokenize
from rnner.runs import load_run

LABELS = {"PER", "ORG", "LOC", "MISC"}
# The first sentences of CoNLL-2003 train: the session run has seen them.
SEEN = "EU rejects German call to boycott British lamb. Peter Blackburn visited Brussels."


def words(text: str) -> list[str]:
    return [t for t, _, _ in tokenize(text)]


def test_tokenize_tokens_and_offsets():
    text = "Peter Blackburn visited Brussels."
    assert tokenize(text) == [
        ("Peter", 0, 5),
        ("Blackburn", 6, 15),
        ("visited", 16, 23),
        ("Brussels", 24, 32),
        (".", 32, 33),
    ]
    for tok, start, end in tokenize("  Mr. Smith,\tof  U.S. Steel (1,000 shares)!"):
        assert tok == "  Mr. Smith,\tof  U.S. Steel (1,000 shares)!"[start:end]


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("The U.S. economy", ["The", "U.S.", "economy"]),
        ("paid 1,000 dollars", ["paid", "1,000", "dollars"]),
        ("on 1996-08-22 at 3.5 %", ["on", "1996-08-22", "at", "3.5", "%"]),
        ("Mr. Smith met Gen. Lee", ["Mr.", "Smith", "met", "Gen.", "Lee"]),
        ("state-of-the-art work", ["state-of-the-art", "work"]),
        ("wait... now -- then", ["wait", "...", "now", "--", "then"]),
        ("(Reuters) -", ["(", "Reuters", ")", "-"]),
        ("George W. Bush", ["George", "W.", "Bush"]),
        ("Visited Brussels.", ["Visited", "Brussels", "."]),
    ],
)
def test_tokenize_cases(text, tokens):
    assert words(text) == tokens


def test_tokenize_splits_negation_clitic():
    assert tokenize("I don't know") == [("I", 0, 1), ("do", 2, 4), ("n't", 4, 7), ("know", 8, 12)]


def test_tokenize_splits_possessive():
    assert words("Germany's representative") == ["Germany", "'s", "representative"]


def test_split_sentences():
    toks = tokenize("Mr. Smith went to Washington. He left. ok")
    sents = split_sentences(toks)
    assert [[t for t, _, _ in s] for s in sents] == [
        ["Mr.", "Smith", "went", "to", "Washington", "."],
        ["He", "left", ".", "ok"],  # a lower-case word does not open a sentence
    ]
    assert split_sentences([]) == []


@pytest.fixture(scope="module")
def tagger(tiny_run):
    return Tagger.load(tiny_run)


def test_tagger_reads_the_run(tagger):
    assert tagger.scheme == "BIOES"
    assert tagger.output_scheme == "IOB2"
    assert not tagger.model.training


def test_predict_text_spans(tagger):
    spans = tagger.predict(SEEN)
    assert spans, "the session run should find entities in sentences it trained on"
    tokens = tokenize(SEEN)
    for s in spans:
        assert isinstance(s, Span)
        assert s.text == SEEN[s.start : s.end]
        assert s.label in LABELS
        assert 0 <= s.token_start < s.token_end <= len(tokens)
        # Token indices count across sentences and agree with the character offsets.
        assert s.start == tokens[s.token_start][1]
        assert s.end == tokens[s.token_end - 1][2]
        assert set(s.to_dict()) == {"text", "label", "start", "end", "token_start", "token_end"}
    starts = [s.start for s in spans]
    assert starts == sorted(starts)


def test_predict_tokens(tagger):
    tokens = ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."]
    spans = tagger.predict(tokens)
    assert spans
    joined = " ".join(tokens)
    for s in spans:
        assert s.text == joined[s.start : s.end]
        assert s.text == " ".join(tokens[s.token_start : s.token_end])
    # Tokens and raw text give the same entities when the tokenizer agrees.
    same = tagger.predict("EU rejects German call to boycott British lamb.")
    assert [(s.label, s.token_start, s.token_end) for s in same] == [
        (s.label, s.token_start, s.token_end) for s in spans
    ]


def test_predict_empty_inputs(tagger):
    assert tagger.predict("") == []
    assert tagger.predict([]) == []
    assert tagger.predict_text(["", "   "]) == [[], []]


def test_tag_returns_source_scheme_tags(tagger):
    sents = [["Peter", "Blackburn"], [], ["EU", "rejects", "German", "call"]]
    out = tagger.tag(sents)
    assert [len(t) for t in out] == [2, 0, 4]
    for seq in out:
        for tag in seq:
            assert tag == "O" or (tag[:2] in ("B-", "I-") and tag[2:] in LABELS)


def test_predict_text_keeps_texts_apart(tagger):
    texts = ["Peter Blackburn visited Brussels.", "no entities here", SEEN]
    out = tagger.predict_text(texts)
    assert len(out) == 3
    for text, spans in zip(texts, out, strict=True):
        for s in spans:
            assert s.text == text[s.start : s.end]
    assert out[2] == tagger.predict(SEEN)


def test_load_run_refuses_pickle_files(run_copy):
    (run_copy / "model.pt").write_bytes(b"\x80\x04K\x01.")  # a harmless pickle
    with pytest.raises(RunDirError) as info:
        load_run(run_copy)
    message = str(info.value)
    assert "pickle" in message
    assert "model.pt" in message
    assert message.startswith(f"{run_copy}: ")


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "vocab.json", "run.json"])
def test_load_run_names_a_missing_file(run_copy, name):
    (run_copy / name).unlink()
    with pytest.raises(RunDirError) as info:
        load_run(run_copy)
    assert str(info.value) == f"{run_copy}: not a run directory (missing {name})"


def test_load_run_missing_directory(tmp_path):
    with pytest.raises(RunDirError) as info:
        Tagger.load(tmp_path / "nope")
    assert str(info.value) == f"{tmp_path / 'nope'}: not a run directory (no such directory)"


@pytest.mark.parametrize(
    ("name", "damage"),
    [
        ("vocab.json", b"{bad"),
        ("config.json", b'{"model": {"cell": "tree"}}'),
        ("model.safetensors", b"\x00" * 100),
    ],
)
def test_load_run_reports_damaged_files(run_copy, name, damage):
    (run_copy / name).write_bytes(damage)
    with pytest.raises(RunDirError) as info:
        load_run(run_copy)
    assert str(info.value).startswith(f"{run_copy}: damaged run directory (")


def test_export_half_precision_predicts_the_same(tiny_run, tmp_path):
    from rnner.runs import export_run

    out = export_run(tiny_run, tmp_path / "half")
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "metrics.json",
        "model.safetensors",
        "run.json",
        "vocab.json",
    ]
    full = (tiny_run / "model.safetensors").stat().st_size
    assert (out / "model.safetensors").stat().st_size < 0.6 * full
    text = "Peter Blackburn visited Brussels . German officials met EU leaders in Bonn ."
    assert Tagger.load(out).predict(text) == Tagger.load(tiny_run).predict(text)


def test_the_shipped_model_loads_by_default_and_finds_entities():
    from rnner.runs import default_model_path

    path = default_model_path()
    assert path.name == "conll03-en"
    spans = Tagger.load().predict("Peter Blackburn visited Brussels on Monday.")
    assert [(s.label, s.text) for s in spans] == [("PER", "Peter Blackburn"), ("LOC", "Brussels")]
