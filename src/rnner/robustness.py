"""`rnner robustness`: a model scored on a labelled file and on perturbed copies of it.

Scoring is `rnner evaluate`'s: the tagger tags the sentences with their document ids and
entity F1 is conlleval's (`metrics.entity_scores`), so the clean row equals `rnner evaluate`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import conll, metrics, perturb
from .conll import InputError, Sentence

DEFAULT_PERTURBATIONS = ("lower", "upper", "title", "typos", "mentions")


class RobustnessError(InputError):
    """A robustness report that cannot be made as asked (no training file to tell seen
    names from unseen ones, a mentions file with no mention of a needed type)."""


def score(tagger: Any, sents: Sequence[Sentence]) -> metrics.EntityScores:
    """conlleval entity scores of `tagger` on labelled sentences, as `rnner evaluate` has."""
    pred = tagger.tag([s.tokens for s in sents], doc_ids=[s.doc_id for s in sents])
    return metrics.entity_scores([list(s.tags or ()) for s in sents], pred)


def read_mentions(path: str | Path) -> dict[str, list[perturb.Mention]]:
    """A mentions file: one mention a line, `TYPE<TAB>the mention's tokens` (tokens split on
    spaces); blank lines and lines starting with `#` are skipped."""
    pool: dict[str, dict[perturb.Mention, None]] = {}
    for n, raw in enumerate(conll.read_text(path).split("\n"), 1):
        line = raw.rstrip("\r")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        label, sep, text = line.partition("\t")
        tokens = tuple(text.split())
        if not sep or not label.strip() or not tokens:
            raise RobustnessError(path, n, f"expected 'TYPE<TAB>mention', found {line!r}")
        pool.setdefault(label.strip(), {})[tokens] = None
    if not pool:
        raise RobustnessError(path, None, "no mentions in the file")
    return {label: list(ms) for label, ms in pool.items()}


def training_file(tagger: Any, given: str | None) -> Path:
    """The file the model was trained on: `--train`, else the path its run.json records,
    else its config's training split."""
    if given:
        return Path(given)
    recorded = tagger.meta.get("data", {}).get("train", {}).get("path")
    if recorded and Path(recorded).is_file():
        return Path(recorded)
    from .data import DataError, resolve_split

    d = tagger.cfg.data
    try:
        return Path(d.train) if d.train else resolve_split(d.dataset, "train", d.data_dir or None)
    except DataError:
        raise RobustnessError(
            None,
            None,
            "the model's training file was not found: pass "
            "--train FILE (to tell unseen names from seen ones) or "
            "--mentions FILE",
        ) from None


def report(
    tagger: Any,
    data: str | Path,
    kinds: Sequence[str] = DEFAULT_PERTURBATIONS,
    *,
    typo_rate: float = 0.1,
    seed: int = 1,
    mentions_file: str | None = None,
    train_file: str | None = None,
) -> dict[str, Any]:
    """Scores on the clean file and on each perturbed copy (F1 and its drop in points)."""
    d = tagger.cfg.data
    sents = conll.read_conll(data, word_column=d.word_column, tag_column=d.tag_column)
    types = {tag.split("-", 1)[1] for tag in tagger.vocabs.tags.itos if tag != "O"}
    scheme = conll.check_tags(sents, data, types=types)
    result: dict[str, Any] = {"data": str(data), "seed": seed, "sentences": len(sents)}
    pool = None
    if "mentions" in kinds:
        if mentions_file:
            pool = read_mentions(mentions_file)
            result["mentions"] = {"source": str(mentions_file)}
        else:
            train = training_file(tagger, train_file)
            train_sents = conll.read_conll(
                train, word_column=d.word_column, tag_column=d.tag_column
            )
            pool = perturb.unseen_mentions(
                sents, scheme, train_sents, conll.check_tags(train_sents, train)
            )
            result["mentions"] = {"source": f"mentions of {data} that are no mention in {train}"}
        result["mentions"]["per_type"] = {k: len(v) for k, v in sorted(pool.items())}
    if "typos" in kinds:
        result["typo_rate"] = typo_rate
    rows: dict[str, Any] = {}
    clean = score(tagger, sents)
    rows["clean"] = _row(clean, None)
    for kind in kinds:
        copy = perturb.perturb(sents, kind, scheme, seed, typo_rate=typo_rate, pool=pool)
        rows[kind] = _row(score(tagger, copy), clean.f1)
    result["results"] = rows
    return result


def _row(s: metrics.EntityScores, clean_f1: float | None) -> dict[str, Any]:
    e = s.to_dict()
    row = {k: e[k] for k in ("precision", "recall", "f1", "per_type")}
    if clean_f1 is not None:
        row["drop"] = round(100 * (clean_f1 - s.f1), 2)  # points of F1 lost
    return row


def table(result: dict[str, Any]) -> str:
    lines = [f"{'perturbation':14s} {'P':>6s} {'R':>6s} {'F1':>6s} {'drop':>6s}"]
    for name, row in result["results"].items():
        label = f"typos {result['typo_rate']:g}" if name == "typos" else name
        drop = f"{row['drop']:6.2f}" if "drop" in row else f"{'':6s}"
        lines.append(
            f"{label:14s} {100 * row['precision']:6.2f} {100 * row['recall']:6.2f} "
            f"{100 * row['f1']:6.2f} {drop}"
        )
    return "\n".join(lines) + "\n"


def cmd_robustness(args: argparse.Namespace) -> int:
    from .predict import Tagger

    kinds = args.perturb or list(DEFAULT_PERTURBATIONS)
    if not 0 <= args.typo_rate <= 1:
        raise RobustnessError(None, None, f"--typo-rate {args.typo_rate} is not in [0, 1]")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    tagger = Tagger.load(args.run_dir)
    result = report(
        tagger,
        args.data,
        kinds,
        typo_rate=args.typo_rate,
        seed=args.seed,
        mentions_file=args.mentions,
        train_file=args.train,
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        sys.stdout.write(table(result))
    return 0


def add_robustness_parser(sub: Any) -> argparse.ArgumentParser:
    """`rnner robustness`, for cli.py's table of commands."""
    r = sub.add_parser(
        "robustness",
        help="score a run on lower/UPPER/Title-cased, misspelt "
        "and name-swapped copies of a labelled file",
    )
    r.add_argument("run_dir")
    r.add_argument("--data", required=True, help="labelled CoNLL file")
    r.add_argument(
        "--perturb",
        action="append",
        choices=perturb.PERTURBATIONS,
        help="a perturbation (repeatable; default: all)",
    )
    r.add_argument(
        "--typo-rate",
        type=float,
        default=0.1,
        help="share of words (2+ letters) given one typo (0.1)",
    )
    r.add_argument(
        "--mentions",
        help="mentions to swap in, 'TYPE<TAB>tokens' a line "
        "(default: the file's mentions that are no mention in the training file)",
    )
    r.add_argument("--train", help="the model's training file (default: as its run.json says)")
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_robustness)
    return r
