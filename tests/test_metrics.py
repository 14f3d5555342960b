import json
import random
import warnings
from collections import Counter

import numpy as np
import pytest
from conftest import CONLL, needs_conll

from rnner.metrics import (
    EntityScores,
    ScoreInputError,
    confusion,
    conlleval_report,
    entity_scores,
    read_conlleval,
    token_report,
)
from rnner.tags import conlleval_chunks, convert

CONLL_TEST = CONLL / "test.txt"

# (gold, pred, gold chunks, pred chunks, (correct, found, gold count)), worked out by hand
# from conlleval's startOfChunk/endOfChunk.
HAND_CASES = {
    "I- after O, B- after same-type I-": (
        "I-PER I-PER B-PER O I-LOC",
        "B-PER I-PER I-PER O B-LOC",
        [("PER", 0, 2), ("PER", 2, 3), ("LOC", 4, 5)],
        [("PER", 0, 3), ("LOC", 4, 5)],
        (1, 2, 3),
    ),
    "type switches inside I- runs": (
        "B-ORG I-ORG I-MISC I-MISC O I-PER I-LOC I-PER",
        "B-ORG I-ORG I-ORG I-MISC O I-PER I-LOC I-PER",
        [("ORG", 0, 2), ("MISC", 2, 4), ("PER", 5, 6), ("LOC", 6, 7), ("PER", 7, 8)],
        [("ORG", 0, 3), ("MISC", 3, 4), ("PER", 5, 6), ("LOC", 6, 7), ("PER", 7, 8)],
        (3, 5, 5),
    ),
    "E- without B-": (
        "O E-PER O I-LOC E-LOC",
        "B-PER E-PER O E-LOC E-LOC",
        [("PER", 1, 2), ("LOC", 3, 5)],
        [("PER", 0, 2), ("LOC", 3, 4), ("LOC", 4, 5)],
        (0, 3, 2),
    ),
    "ends in I-; B- after B- same type": (
        "O B-PER I-PER",
        "O B-PER B-PER",
        [("PER", 1, 3)],
        [("PER", 1, 2), ("PER", 2, 3)],
        (0, 2, 1),
    ),
    "I- start counts like B- start": (
        "B-LOC I-LOC O I-LOC",
        "I-LOC I-LOC O I-LOC",
        [("LOC", 0, 2), ("LOC", 3, 4)],
        [("LOC", 0, 2), ("LOC", 3, 4)],
        (2, 2, 2),
    ),
    "S- and E- end, B- after E- starts": (
        "S-PER I-PER E-PER B-PER E-PER",
        "B-PER I-PER I-PER B-PER I-PER",
        [("PER", 0, 1), ("PER", 1, 3), ("PER", 3, 5)],
        [("PER", 0, 3), ("PER", 3, 5)],
        (1, 2, 3),
    ),
    "B-X then I-Y": (
        "B-PER I-LOC O",
        "B-PER B-LOC O",
        [("PER", 0, 1), ("LOC", 1, 2)],
        [("PER", 0, 1), ("LOC", 1, 2)],
        (2, 2, 2),
    ),
}


@pytest.mark.parametrize("name", list(HAND_CASES))
def test_conlleval_counts_by_hand(name):
    gold, pred, gold_chunks, pred_chunks, (correct, found, n_gold) = HAND_CASES[name]
    gold, pred = gold.split(), pred.split()
    assert conlleval_chunks(gold) == gold_chunks
    assert conlleval_chunks(pred) == pred_chunks
    scores = entity_scores([gold], [pred])
    assert (scores.correct_chunks, scores.pred_chunks, scores.gold_chunks) == (
        correct,
        found,
        n_gold,
    )
    assert scores.tokens == len(gold)
    assert scores.correct_tokens == sum(g == p for g, p in zip(gold, pred, strict=True))


def test_hand_cases_together_and_per_type():
    gold = [c[0].split() for c in HAND_CASES.values()]
    pred = [c[1].split() for c in HAND_CASES.values()]
    scores = entity_scores(gold, pred)
    assert (scores.correct_chunks, scores.pred_chunks, scores.gold_chunks) == (9, 18, 18)
    assert scores.precision == pytest.approx(9 / 18) and scores.recall == pytest.approx(9 / 18)
    counts = {t: (s.correct, s.predicted, s.support) for t, s in scores.per_type.items()}
    assert counts == {"LOC": (5, 7, 6), "MISC": (0, 1, 1), "ORG": (0, 1, 1), "PER": (4, 9, 10)}
    loc = scores.per_type["LOC"]
    assert loc.precision == pytest.approx(5 / 7)
    assert loc.recall == pytest.approx(5 / 6)
    assert loc.f1 == pytest.approx(2 * (5 / 7) * (5 / 6) / (5 / 7 + 5 / 6))


def test_sentence_boundaries_end_chunks():
    gold = [["B-PER", "I-PER"], ["I-PER", "O"]]
    scores = entity_scores(gold, gold)
    assert (scores.correct_chunks, scores.gold_chunks) == (2, 2)
    # Glued into one sentence it would be a single chunk.
    assert entity_scores([gold[0] + gold[1]], [gold[0] + gold[1]]).gold_chunks == 1
    pred = [["B-PER", "I-PER"], ["B-PER", "O"]]
    assert entity_scores(gold, pred).correct_chunks == 2


def test_empty_and_zero_division():
    scores = entity_scores([], [])
    assert (scores.precision, scores.recall, scores.f1, scores.accuracy) == (0, 0, 0, 0)
    scores = entity_scores([["O", "O"]], [["B-PER", "O"]])
    assert (scores.precision, scores.recall, scores.f1) == (0, 0, 0)
    assert scores.accuracy == 0.5
    assert scores.per_type["PER"].support == 0 and scores.per_type["PER"].predicted == 1


def test_length_mismatch():
    with pytest.raises(ValueError, match="sentence 1: gold has 2 tags but prediction has 1"):
        entity_scores([["O"], ["O", "O"]], [["O"], ["O"]])
    with pytest.raises(ValueError, match="2 sentences but prediction has 1"):
        entity_scores([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="sentence 0"):
        token_report([["O"]], [[]])


# --- a direct transcription of conlleval.pl's streaming count, used as a reference -----------


def _split(tag):
    prefix, sep, label = tag.partition("-")
    return (prefix, label) if sep else (tag, "")


def _end(pt, t, ptype, typ):
    return (
        pt in ("E", "S")
        or (pt in ("B", "I") and t in ("B", "S", "O"))
        or (pt not in ("O", ".") and ptype != typ)
    )


def _start(pt, t, ptype, typ):
    return (
        t in ("B", "S")
        or (t in ("I", "E") and pt in ("E", "S", "O"))
        or (t not in ("O", ".") and ptype != typ)
    )


def perl_counts(gold_sents, pred_sents):
    """conlleval.pl's main loop: inCorrect state machine over lines, '-X- O O' between sentences."""
    lines = []
    for g, p in zip(gold_sents, pred_sents, strict=True):
        lines += [(False, a, b) for a, b in zip(g, p, strict=True)] + [(True, "O", "O")]
    correct, found_g, found_c = Counter(), Counter(), Counter()
    tokens = correct_tags = 0
    in_correct = False
    last_c, last_g, last_ct, last_gt = "O", "O", "", ""
    for boundary, ctag, gtag in lines:
        c, ct = _split(ctag)
        g, gt = _split(gtag)
        if in_correct:
            end_c, end_g = _end(last_c, c, last_ct, ct), _end(last_g, g, last_gt, gt)
            if end_c and end_g and last_gt == last_ct:
                in_correct = False
                correct[last_ct] += 1
            elif end_c != end_g or gt != ct:
                in_correct = False
        start_c, start_g = _start(last_c, c, last_ct, ct), _start(last_g, g, last_gt, gt)
        if start_c and start_g and gt == ct:
            in_correct = True
        found_c[ct] += start_c
        found_g[gt] += start_g
        if not boundary:
            correct_tags += c == g and gt == ct
            tokens += 1
        last_c, last_g, last_ct, last_gt = c, g, ct, gt
    if in_correct:
        correct[last_ct] += 1
    return +correct, +found_g, +found_c, tokens, correct_tags


def assert_matches_perl(gold, pred):
    scores = entity_scores(gold, pred)
    correct, found, n_gold, tokens, correct_tags = perl_counts(gold, pred)
    assert scores.correct_chunks == sum(correct.values())
    assert scores.pred_chunks == sum(found.values())
    assert scores.gold_chunks == sum(n_gold.values())
    assert (scores.tokens, scores.correct_tokens) == (tokens, correct_tags)
    for name, ts in scores.per_type.items():
        assert (ts.correct, ts.predicted, ts.support) == (correct[name], found[name], n_gold[name])
    assert set(scores.per_type) == set(found) | set(n_gold)


def test_matches_conlleval_state_machine_on_random_sequences():
    rng = random.Random(0)
    vocab = ["O", "O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]
    gold, pred = [], []
    for _ in range(3000):
        n = rng.randrange(0, 8)
        gold.append([rng.choice(vocab) for _ in range(n)])
        pred.append([rng.choice(vocab) for _ in range(n)])
    assert_matches_perl(gold, pred)


# --- seqeval agreement on real gold tags with synthetic errors -------------------------------


def read_gold_tags(path):
    sents, cur = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if not fields:
            if cur:
                sents.append(cur)
            cur = []
        elif fields[0] != "-DOCSTART-":
            cur.append(fields[-1])
    if cur:
        sents.append(cur)
    return sents


TYPES = ["PER", "LOC", "ORG", "MISC"]


def corrupt(sents, rate, seed):
    """Flip prefixes, types, or to/from O, independently per token with probability `rate`."""
    rng = random.Random(seed)
    out = []
    for sent in sents:
        new = []
        for tag in sent:
            if rng.random() < rate:
                prefix, _, label = tag.partition("-")
                kind = rng.randrange(4)
                if tag == "O":
                    tag = f"{rng.choice('BIES')}-{rng.choice(TYPES)}"
                elif kind == 0:
                    tag = f"{rng.choice('BIES')}-{label}"
                elif kind == 1:
                    tag = f"{prefix}-{rng.choice(TYPES)}"
                elif kind == 2:
                    tag = "O"
                else:
                    tag = f"{rng.choice('BIES')}-{rng.choice(TYPES)}"
            new.append(tag)
        out.append(new)
    return out


@pytest.fixture(scope="module")
def conll_gold():
    needs_conll()
    return read_gold_tags(CONLL_TEST)


@pytest.mark.parametrize(
    ("gold_scheme", "gold_rate", "pred_rate", "seed"),
    [
        (None, 0.0, 0.02, 1),
        (None, 0.03, 0.3, 3),
        ("BIOES", 0.0, 0.1, 4),
        ("IOB1", 0.01, 0.05, 5),
    ],
)
def test_agrees_with_seqeval(conll_gold, gold_scheme, gold_rate, pred_rate, seed):
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    gold = conll_gold
    if gold_scheme is not None:
        gold = [convert(s, to=gold_scheme, source="IOB2") for s in gold]
    gold = corrupt(gold, gold_rate, seed + 100)
    pred = corrupt(gold, pred_rate, seed)
    scores = entity_scores(gold, pred)
    assert 0 < scores.f1 < 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns about E-/S- in non-strict mode
        assert scores.precision == pytest.approx(precision_score(gold, pred), abs=1e-9)
        assert scores.recall == pytest.approx(recall_score(gold, pred), abs=1e-9)
        assert scores.f1 == pytest.approx(f1_score(gold, pred), abs=1e-9)
        report = classification_report(gold, pred, output_dict=True, zero_division=0)
    types = {k for k in report if not k.endswith(" avg")}
    assert types == set(scores.per_type)
    for name, ts in scores.per_type.items():
        row = report[name]
        assert ts.precision == pytest.approx(row["precision"], abs=1e-9)
        assert ts.recall == pytest.approx(row["recall"], abs=1e-9)
        assert ts.f1 == pytest.approx(row["f1-score"], abs=1e-9)
        assert ts.support == row["support"]
    flat = [(g, p) for gs, ps in zip(gold, pred, strict=True) for g, p in zip(gs, ps, strict=True)]
    assert scores.accuracy == pytest.approx(sum(g == p for g, p in flat) / len(flat), abs=1e-12)
    assert_matches_perl(gold, pred)


# --- report and input format ------------------------------------------------------------------

SMALL_GOLD = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
SMALL_PRED = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O"]]


def test_conlleval_report_exact_text():
    expected = (
        "processed 6 tokens with 3 phrases; found: 3 phrases; correct: 2.\n"
        "accuracy:  83.33%; precision:  66.67%; recall:  66.67%; FB1:  66.67\n"
        "              LOC: precision:   0.00%; recall:   0.00%; FB1:   0.00  0\n"
        "              ORG: precision:  50.00%; recall: 100.00%; FB1:  66.67  2\n"
        "              PER: precision: 100.00%; recall: 100.00%; FB1: 100.00  1\n"
    )
    assert conlleval_report(entity_scores(SMALL_GOLD, SMALL_PRED)) == expected


def test_conlleval_report_without_tokens_and_long_type_names():
    assert conlleval_report(entity_scores([], [])) == (
        "processed 0 tokens with 0 phrases; found: 0 phrases; correct: 0.\n"
    )
    gold = [["B-A_VERY_LONG_TYPE_NAME", "O", "O"]]
    pred = [["B-A_VERY_LONG_TYPE_NAME", "O", "B-X"]]
    assert conlleval_report(entity_scores(gold, pred)) == (
        "processed 3 tokens with 1 phrases; found: 2 phrases; correct: 1.\n"
        "accuracy:  66.67%; precision:  50.00%; recall: 100.00%; FB1:  66.67\n"
        "A_VERY_LONG_TYPE_NAME: precision: 100.00%; recall: 100.00%; FB1: 100.00  1\n"
        "                X: precision:   0.00%; recall:   0.00%; FB1:   0.00  1\n"
    )


def test_to_dict_is_json_and_has_documented_keys():
    data = entity_scores(SMALL_GOLD, SMALL_PRED).to_dict()
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {"precision", "recall", "f1", "accuracy", "per_type"}
    assert data["per_type"]["ORG"] == {
        "precision": 0.5,
        "recall": 1.0,
        "f1": pytest.approx(2 / 3),
        "support": 1,
    }
    assert isinstance(entity_scores(SMALL_GOLD, SMALL_PRED), EntityScores)


def test_read_conlleval_lines_boundaries_and_docstart():
    lines = [
        "-DOCSTART- -X- O O\n",
        "\n",
        "John NNP B-PER B-PER\n",
        "Smith NNP I-PER O\r\n",
        "-X- -X- O O\n",
        "Paris NNP B-LOC B-LOC\n",
        "   \n",
        "\n",
        "in IN O O",
    ]
    gold, pred = read_conlleval(lines)
    assert gold == [["O"], ["B-PER", "I-PER"], ["B-LOC"], ["O"]]
    assert pred == [["O"], ["B-PER", "O"], ["B-LOC"], ["O"]]
    # conlleval counts -DOCSTART- lines as tokens; skip_docstart drops them.
    assert entity_scores(gold, pred).tokens == 5
    gold, pred = read_conlleval(lines, skip_docstart=True)
    assert gold == [["B-PER", "I-PER"], ["B-LOC"], ["O"]]
    assert entity_scores(gold, pred).tokens == 4


def test_read_conlleval_file_and_errors(tmp_path):
    path = tmp_path / "out.txt"
    path.write_text("a NN B-PER B-PER\nb NN I-PER I-PER\n\nc NN O O\n", encoding="utf-8")
    gold, pred = read_conlleval(path)
    assert gold == pred == [["B-PER", "I-PER"], ["O"]]
    assert read_conlleval(str(path)) == (gold, pred)

    path.write_text("a NN B-PER B-PER\n\nb NN O\n", encoding="utf-8")
    with pytest.raises(ScoreInputError) as info:
        read_conlleval(path)
    assert str(info.value) == f"{path}:3: expected 4 columns as on the first line, found 3"
    assert (info.value.path, info.value.line) == (str(path), 3)
    assert isinstance(info.value, ValueError)

    with pytest.raises(ScoreInputError, match=r"^<input>:2: expected at least 2 columns"):
        read_conlleval(["", "lonely", "x"])


def test_token_report():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zero_division=0: no undefined-metric warnings
        text, data = token_report(SMALL_GOLD, SMALL_PRED, digits=4)
    labels = ["B-LOC", "B-ORG", "B-PER", "I-PER", "O"]
    assert [k for k in data if k in labels] == labels
    assert data["B-LOC"]["recall"] == 0.0 and data["B-LOC"]["support"] == 1
    assert data["B-ORG"]["precision"] == 0.5 and data["O"]["support"] == 2
    assert data["accuracy"] == pytest.approx(5 / 6)
    assert "0.6667" in text and "B-LOC" in text


def test_confusion():
    labels, matrix = confusion(SMALL_GOLD, SMALL_PRED)
    assert labels == ["B-LOC", "B-ORG", "B-PER", "I-PER", "O"]
    expected = np.array(
        [
            [0, 1, 0, 0, 0],
            [0, 1, 0, 0, 0],
            [0, 0, 1, 0, 0],
            [0, 0, 0, 1, 0],
            [0, 0, 0, 0, 2],
        ]
    )
    np.testing.assert_array_equal(matrix, expected)
    labels, matrix = confusion([], [])
    assert labels == [] and matrix.shape == (0, 0)
