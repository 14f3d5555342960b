"""CrossWeigh (Wang et al. 2019): find the training sentences whose labels models disagree
with when they cannot have memorised them, and trust those labels less.

The training articles are dealt into k folds. For each fold a model is trained on the other
folds, minus every sentence that mentions an entity of the held-out fold (the same words, any
type), so it must tag those entities from their context; it then tags the held-out fold, and
a sentence whose predicted entities differ from its labelled ones is flagged. Repeated over
several random splits, a sentence flagged c times gets trust eps**c: the chance that its
labels are right, which `data.train_trust` reads (crf.label_channel).

    rnner crossweigh configs/conll03.toml --folds 5 --output runs/crossweigh
    rnner train configs/conll03.toml --set data.train_trust='"runs/crossweigh/trust.tsv"'
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import files
from .config import Config, ConfigError
from .conll import Sentence, write_conll
from .experiment import train_runs
from .metrics import entity_scores
from .tags import conlleval_chunks


class CrossWeighError(ConfigError):
    """Bad crossweigh options or output directory; the message is one line."""

    def __init__(self, key: str, message: str):
        super().__init__(key, message)
        self.args = (message,)  # the option names itself: no `config KEY:` prefix


def assign_folds(doc_ids: Sequence[int], folds: int, seed: int) -> list[int]:
    """The fold of each sentence: whole articles are dealt out in a random order, so a
    held-out article's other sentences never help its model."""
    docs = sorted(set(doc_ids))
    order = np.random.default_rng(seed).permutation(len(docs))
    fold_of_doc = {docs[j]: rank % folds for rank, j in enumerate(order)}
    return [fold_of_doc[d] for d in doc_ids]


def entity_words(sent: Sentence) -> set[tuple[str, ...]]:
    """The word sequences of a sentence's labelled entities (types ignored)."""
    assert sent.tags is not None
    return {sent.tokens[start:end] for _, start, end in conlleval_chunks(sent.tags)}


def fold_split(
    entities: Sequence[set[tuple[str, ...]]], fold_of: Sequence[int], fold: int
) -> tuple[list[int], list[int]]:
    """Indices of the sentences a fold's model trains on, and of those it tags: the other
    folds' sentences that share no entity (`entity_words` of each sentence) with the held-out
    fold, and the held-out fold."""
    held = [i for i, f in enumerate(fold_of) if f == fold]
    held_entities = set().union(*(entities[i] for i in held))
    train = [i for i, f in enumerate(fold_of) if f != fold and not entities[i] & held_entities]
    return train, held


def disagrees(gold: Sequence[str], pred: Sequence[str]) -> bool:
    """Whether the predicted entities (as conlleval finds them) differ from the gold ones."""
    return set(conlleval_chunks(gold)) != set(conlleval_chunks(pred))


def trust_text(sents: Sequence[Sentence], counts: Sequence[int], eps: float, source: str) -> str:
    """A data.train_trust file: the flagged sentences, by the line of their first token."""
    lines = [
        f"# CrossWeigh trust for {source}: line of a sentence's first token, then "
        f"{eps} ** (times flagged); unlisted sentences were never flagged"
    ]
    lines += [f"{s.line}\t{eps**c:.6g}" for s, c in zip(sents, counts, strict=True) if c]
    return "\n".join(lines) + "\n"


def run(
    config_path: str,
    output: str | Path,
    overrides: Sequence[str] = (),
    folds: int = 5,
    iterations: int = 1,
    eps: float = 0.7,
    workers: int = 0,
) -> dict[str, Any]:
    """Train the fold models, tag their held-out folds, and write OUTPUT/trust.tsv and
    OUTPUT/summary.json. Rerunning the same command skips finished fold models."""
    from .pipeline import load_corpus

    if folds < 2:
        raise CrossWeighError("folds", f"--folds must be at least 2, not {folds}")
    if iterations < 1:
        raise CrossWeighError("iterations", f"--iterations must be at least 1, not {iterations}")
    if not 0 < eps < 1:
        raise CrossWeighError("eps", f"--eps must be in (0, 1), not {eps}")
    out = Path(output)
    overrides = list(overrides)
    cfg = Config.load(config_path, overrides)
    if cfg.data.train_on_dev or cfg.data.train_trust:
        raise CrossWeighError(
            "data",
            "crossweigh splits the training file alone: unset "
            "data.train_on_dev and data.train_trust",
        )
    if (cfg.data.word_column, cfg.data.tag_column) != (0, -1):
        # The fold files hold two columns, token and tag, read like the dev file.
        raise CrossWeighError(
            "data",
            "crossweigh needs the word in the first column and the "
            "tag in the last (data.word_column = 0, "
            "data.tag_column = -1)",
        )
    corpus = load_corpus(cfg)
    sents = corpus.train
    entities = [entity_words(s) for s in sents]
    # Fold files and models already in OUTPUT are reused, so they must be of this split.
    settings: dict[str, Any] = {
        "config": cfg.to_dict(),
        "folds": folds,
        "iterations": iterations,
        "train_sentences": len(sents),
    }
    settings["config"]["train"]["threads"] = 0  # any thread count may carry on
    saved = out / "settings.json"
    out.mkdir(parents=True, exist_ok=True)
    if saved.is_file() and json.loads(saved.read_text()) != settings:
        raise CrossWeighError(
            "output",
            f"{out} holds a crossweigh run of other settings "
            "(config, --folds or --iterations): remove it, or give "
            "another --output",
        )
    files.write_json(saved, settings)
    plan = _write_folds(out, sents, entities, folds, iterations, cfg.train.seed)

    def report(r: dict[str, Any]) -> None:
        print(
            f"{r['output']}: dev F1 {100 * r['dev']['entity']['f1']:.2f} "
            f"({r['wall_seconds']:.0f} s)",
            flush=True,
        )

    jobs = [
        ([*overrides, f"data.train={json.dumps(str(train_file))}"], cfg.train.seed, folder / "run")
        for folder, train_file, _, _ in plan
    ]
    train_runs(config_path, jobs, workers, report)

    counts, per_fold = _flag_held_out(plan, sents)
    files.write_text(out / "trust.tsv", trust_text(sents, counts, eps, corpus.paths["train"]))
    summary = {
        "config": str(config_path),
        "overrides": overrides,
        "folds": folds,
        "iterations": iterations,
        "eps": eps,
        "train": corpus.paths["train"],
        "sentences": len(sents),
        "sentences_with_entities": sum(map(bool, entities)),
        "flagged": sum(c > 0 for c in counts),
        "flagged_with_entities": sum(
            c > 0 and bool(e) for e, c in zip(entities, counts, strict=True)
        ),
        "times_flagged": {str(c): counts.count(c) for c in sorted(set(counts))},
        "fold_models": per_fold,
    }
    files.write_json(out / "summary.json", summary)
    files.write_text(out / "summary.md", markdown(summary))
    return summary


Plan = list[tuple[Path, Path, list[int], list[int]]]  # folder, its train file, train, held


def _write_folds(
    out: Path,
    sents: Sequence[Sentence],
    entities: Sequence[set[tuple[str, ...]]],
    folds: int,
    iterations: int,
    seed: int,
) -> Plan:
    """Each split's fold folders with the fold model's training file (kept if there)."""
    plan = []
    for it in range(1, iterations + 1):
        fold_of = assign_folds([s.doc_id for s in sents], folds, seed * 1000 + it)
        for fold in range(folds):
            train_idx, held_idx = fold_split(entities, fold_of, fold)
            folder = out / f"split{it}" / f"fold{fold + 1}"
            folder.mkdir(parents=True, exist_ok=True)
            train_file = folder / "train.txt"
            if not train_file.is_file():
                write_conll(train_file, [sents[i] for i in train_idx])
            plan.append((folder, train_file, train_idx, held_idx))
    return plan


def _flag_held_out(plan: Plan, sents: Sequence[Sentence]) -> tuple[list[int], list[dict]]:
    """Times each sentence was flagged by the models that held it out, and each model's row."""
    from .predict import Tagger

    counts = [0] * len(sents)
    per_fold = []
    for folder, _, train_idx, held_idx in plan:
        tagger = Tagger.load(folder / "run")
        held = [sents[i] for i in held_idx]
        pred = tagger.tag([s.tokens for s in held], doc_ids=[s.doc_id for s in held])
        flags = [disagrees(s.tags or (), p) for s, p in zip(held, pred, strict=True)]
        for i, flag in zip(held_idx, flags, strict=True):
            counts[i] += flag
        f1 = entity_scores([list(s.tags or ()) for s in held], pred).f1
        metrics = json.loads((folder / "run" / "metrics.json").read_text())
        per_fold.append(
            {
                "run": str(folder / "run"),
                "train_sentences": len(train_idx),
                "held_out_sentences": len(held_idx),
                "held_out_f1": round(f1, 4),
                "dev_f1": metrics["dev"]["entity"]["f1"],
                "flagged": int(sum(flags)),
            }
        )
    return counts, per_fold


def markdown(summary: dict[str, Any]) -> str:
    """The fold models as a table, and what they flagged."""
    rows = [
        "| fold model | trained on (sentences) | held out | held-out F1 | dev F1 | flagged |",
        "|---|---|---|---|---|---|",
    ]
    rows += [
        f"| {m['run']} | {m['train_sentences']} | {m['held_out_sentences']} | "
        f"{100 * m['held_out_f1']:.2f} | {100 * m['dev_f1']:.2f} | {m['flagged']} |"
        for m in summary["fold_models"]
    ]
    share = summary["flagged"] / max(1, summary["sentences"])
    rows += [
        "",
        f"Flagged: {summary['flagged']} of {summary['sentences']} training sentences "
        f"({100 * share:.1f}%); {summary['flagged_with_entities']} of the "
        f"{summary['sentences_with_entities']} with entities.",
    ]
    return "\n".join(rows) + "\n"
