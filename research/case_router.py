"""The case router (rnner.routing) on training and dev articles: where its threshold comes from
and what it does on text the robustness report does not make.

1. The lowest shares of lower-case and of capitalised words over CoNLL-2003's training and dev
   articles, which `routing.MIN_SHARE` (2 %) stays under; and how many articles have more than
   `routing.MAX_LOWER_SENTENCES` of their sentences all lower-case, as they are and with half of
   their sentences lower-cased.
2. Dev F1 of a routed model directory's cased model alone, caseless model alone, and the router,
   on texts the report's whole-file perturbations do not cover: each sentence as its own
   document (a server's one-sentence requests), cased and lower-cased; and articles with half
   of their sentences lower-cased (seeded), the case a router can get wrong.

    python research/case_router.py models/conll03-en [--data DIR] [--threads 1]

Reads train and dev only.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
from collections import defaultdict
from pathlib import Path

from rnner import conll, metrics, perturb, routing
from rnner.conll import Sentence
from rnner.predict import RoutedTagger, Tagger


def shares(sents: list[Sentence]) -> tuple[float, float]:
    """The lowest lower-case share and the lowest capitalised share over the articles."""
    docs: dict[int, list[str]] = defaultdict(list)
    for s in sents:
        docs[s.doc_id].extend(s.tokens)
    low, cap = 1.0, 1.0
    for tokens in docs.values():
        lower, capital, upper = routing.case_counts(tokens)
        words = lower + capital + upper
        if words:
            low, cap = min(low, lower / words), min(cap, capital / words)
    return low, cap


def over_lower(sents: list[Sentence]) -> tuple[int, int]:
    """Articles with more than `MAX_LOWER_SENTENCES` of their sentences all lower-case, and all."""
    docs: dict[int, list[tuple[str, ...]]] = defaultdict(list)
    for s in sents:
        docs[s.doc_id].append(s.tokens)
    over = sum(routing.lower_sentence_share(d) > routing.MAX_LOWER_SENTENCES for d in docs.values())
    return over, len(docs)


def half_lower(sents: list[Sentence]) -> list[Sentence]:
    """Each sentence lower-cased with chance 1/2 (seeded)."""
    rng = random.Random(1)
    return [
        dataclasses.replace(s, tokens=tuple(perturb.recase(s.tokens, "lower")))
        if rng.random() < 0.5
        else s
        for s in sents
    ]


def f1(tagger: Tagger, sents: list[Sentence]) -> float:
    pred = tagger.tag([s.tokens for s in sents], doc_ids=[s.doc_id for s in sents])
    return 100 * metrics.entity_scores([list(s.tags or ()) for s in sents], pred).f1


def variants(dev: list[Sentence]) -> dict[str, list[Sentence]]:
    def lower(s: Sentence) -> Sentence:
        return dataclasses.replace(s, tokens=tuple(perturb.recase(s.tokens, "lower")))

    half = half_lower(dev)
    alone = [dataclasses.replace(s, doc_id=i) for i, s in enumerate(dev)]
    return {
        "articles, clean": dev,
        "articles, half the sentences lower-cased": half,
        "one sentence a document, clean": alone,
        "one sentence a document, lower-cased": [lower(s) for s in alone],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="a routed model directory (rnner export ... --caseless ...)")
    p.add_argument("--data", default=os.environ.get("RNNER_DATA", "../shared/data"))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    root = Path(args.data) / "conll2003"
    split = {name: conll.read_conll(root / f"{name}.txt") for name in ("train", "dev")}
    print("lowest share of an article's alphabetic words:")
    for name, sents in split.items():
        low, cap = shares(sents)
        print(f"  {name}: lower-case {100 * low:.1f} %, capitalised {100 * cap:.1f} %")
    share = routing.MAX_LOWER_SENTENCES
    print(f"articles with more than {share:g} of their sentences all lower-case:")
    for name, sents in split.items():
        (a, n), (b, _) = over_lower(sents), over_lower(half_lower(sents))
        print(f"  {name}: {a} of {n} as they are, {b} with half of their sentences lower-cased")
    tagger = Tagger.load(args.model)
    if not isinstance(tagger, RoutedTagger):
        raise SystemExit(f"{args.model}: not a routed model directory")
    models = {**tagger.taggers, "routed": tagger}
    print()
    print("| dev text | " + " | ".join(models) + " | routed to cased |")
    print("|---|" + "---:|" * (len(models) + 1))
    for name, sents in variants(split["dev"]).items():
        docs: dict[int, list[tuple[str, ...]]] = defaultdict(list)
        for s in sents:
            docs[s.doc_id].append(s.tokens)
        cased = sum(tagger.route(d) == routing.CASED for d in docs.values())
        cells = " | ".join(f"{f1(m, sents):.2f}" for m in models.values())
        print(f"| {name} | {cells} | {cased} of {len(docs)} |")


if __name__ == "__main__":
    main()
