import json

import pytest
from conftest import tiny_sections, to_toml

from rnner.cli import main
from rnner.config import Config
from rnner.conll import Sentence
from rnner.crossweigh import assign_folds, disagrees, entity_words, fold_split, trust_text
from rnner.pipeline import load_corpus


def sent(text: str, tags: str, doc: int, line: int) -> Sentence:
    return Sentence(tuple(text.split()), tuple(tags.split()), doc, line)


SENTS = [
    sent("Peter Blackburn spoke", "B-PER I-PER O", 0, 2),
    sent("Blackburn won", "B-ORG O", 0, 6),  # a different entity: one word only
    sent("Peter Blackburn Ltd said", "B-ORG I-ORG I-ORG O", 1, 10),
    sent("He met Peter Blackburn", "O O B-ORG I-ORG", 1, 15),  # same words, another type
    sent("Rain fell", "O O", 2, 20),
    sent("Bonn said", "B-LOC O", 3, 24),
]


def test_folds_hold_whole_articles_dealt_evenly_and_reproducibly():
    docs = [d for d in range(10) for _ in range(d % 3 + 1)]  # 10 articles of 1-3 sentences
    folds = assign_folds(docs, 3, seed=7)
    assert folds == assign_folds(docs, 3, seed=7)
    assert folds != assign_folds(docs, 3, seed=8)
    by_doc: dict[int, set[int]] = {}
    for d, f in zip(docs, folds, strict=True):
        by_doc.setdefault(d, set()).add(f)
    assert all(len(fs) == 1 for fs in by_doc.values())
    sizes = [sum(fs == {f} for fs in by_doc.values()) for f in range(3)]
    assert sorted(sizes) == [3, 3, 4]


def test_fold_training_drops_sentences_that_share_an_held_out_entity():
    fold_of = [0, 0, 1, 1, 1, 1]
    entities = [entity_words(s) for s in SENTS]
    train, held = fold_split(entities, fold_of, 0)
    assert held == [0, 1]
    # Sentence 3 mentions "Peter Blackburn" (as ORG, not PER: types are ignored); sentence
    # 2's entity is "Peter Blackburn Ltd", a different one; sentence 4 has none.
    assert train == [2, 4, 5]
    train, held = fold_split(entities, fold_of, 1)
    assert held == [2, 3, 4, 5]
    assert train == [1]  # sentence 0 mentions "Peter Blackburn", which fold 1 holds


def test_disagreement_is_on_entities_as_conlleval_reads_them():
    assert not disagrees(["B-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"])
    assert not disagrees(["I-PER", "I-PER", "O"], ["B-PER", "I-PER", "O"])  # IOB1 vs IOB2
    assert disagrees(["B-PER", "I-PER", "O"], ["B-ORG", "I-ORG", "O"])
    assert disagrees(["B-PER", "I-PER", "O"], ["B-PER", "O", "O"])
    assert disagrees(["O", "O"], ["B-LOC", "O"])


def test_trust_text_lists_flagged_sentences_by_line():
    text = trust_text(SENTS[:4], [0, 1, 0, 2], 0.7, "train.txt")
    lines = text.splitlines()
    assert lines[0].startswith("# CrossWeigh trust for train.txt")
    assert lines[1:] == ["6\t0.7", "15\t0.49"]


def test_crossweigh_command_writes_a_trust_file_training_reads(conll_dir, tmp_path, capsys):
    sections = tiny_sections(
        data={"data_dir": str(conll_dir.parent), "max_sentences": 60}, train={"epochs": 1}
    )
    config = tmp_path / "tiny.toml"
    config.write_text(to_toml(sections), encoding="utf-8")
    out = tmp_path / "cw"
    assert (
        main(["crossweigh", str(config), "--folds", "2", "--workers", "1", "--output", str(out)])
        == 0
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["sentences"] == 60
    assert [m["held_out_sentences"] for m in summary["fold_models"]] != [0, 0]
    assert sum(m["held_out_sentences"] for m in summary["fold_models"]) == 60
    assert all(0 <= m["held_out_f1"] <= 1 for m in summary["fold_models"])
    assert 0 < summary["sentences_with_entities"] < 60
    flagged = sum(m["flagged"] for m in summary["fold_models"])
    assert summary["flagged"] == flagged == 60 - summary["times_flagged"].get("0", 0)
    printed = capsys.readouterr().out
    assert f"Flagged: {flagged} of 60 training sentences" in printed
    assert printed.count("| ") > 2 and (out / "summary.md").read_text() in printed
    corpus = load_corpus(
        Config.from_dict(
            {**sections, "data": {**sections["data"], "train_trust": str(out / "trust.tsv")}}
        )
    )
    assert corpus.trust is not None
    assert sum(t == pytest.approx(0.7) for t in corpus.trust) == flagged
    # A rerun reuses the trained fold models.
    mtime = (out / "split1" / "fold1" / "run" / "model.safetensors").stat().st_mtime
    assert (
        main(["crossweigh", str(config), "--folds", "2", "--workers", "1", "--output", str(out)])
        == 0
    )
    assert (out / "split1" / "fold1" / "run" / "model.safetensors").stat().st_mtime == mtime

    assert main(["crossweigh", str(config), "--folds", "1", "--output", str(out)]) == 2
    assert "--folds must be at least 2, not 1" in capsys.readouterr().err
    assert main(["crossweigh", str(config), "--folds", "3", "--output", str(out)]) == 2
    assert "holds a crossweigh run of other settings" in capsys.readouterr().err
