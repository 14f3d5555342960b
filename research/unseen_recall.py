"""Entity recall on dev by whether the entity's words were seen in training.

Test has more entities with words that training never shows (a third of them, against a fifth
on dev), so a change that helps those on dev is worth more on test than its dev F1 says. This
reads dev only (`--split` for another file); the shares are counted from gold tags alone.

    python research/unseen_recall.py NAME=RUN_DIR [NAME=RUN_DIR ...] [--split dev]
    python research/unseen_recall.py --mean NAME=RUN_DIR ...   # adds the runs' mean recall
    python research/unseen_recall.py --shares RUN_DIR   # gold entities per group, dev and test

Groups: "seen" (every word of the entity occurs in train), "pretrained" (some word does not,
but every word has a pretrained vector in the model's vocabulary), "unknown" (some word is
UNK to the model). Words compare as the model's vocabulary keys them (lower case, digits 0).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Iterator

from rnner import tags
from rnner.pipeline import Corpus, load_corpus
from rnner.predict import Tagger
from rnner.tags import Span
from rnner.vocab import word_key

GROUPS = ("seen", "pretrained", "unknown")


def group(words: list[str], tagger: Tagger, train_words: set[str]) -> str:
    keys = [word_key(w, tagger.vocabs.lowercase) for w in words]
    if all(k in train_words for k in keys):
        return "seen"
    if all(tagger.vocabs.words.id(k) != tagger.vocabs.words.unk_id for k in keys):
        return "pretrained"
    return "unknown"


def gold_groups(tagger: Tagger, corpus: Corpus, split: str) -> Iterator[tuple[int, Span, str]]:
    """(sentence index, gold span, group) for every gold entity of `split`."""
    train_words = {word_key(t, tagger.vocabs.lowercase) for s in corpus.train for t in s.tokens}
    for i, s in enumerate(getattr(corpus, split)):
        for span in tags.spans(list(s.tags), tagger.output_scheme):
            yield i, span, group(list(s.tokens[span[1] : span[2]]), tagger, train_words)


def recall_by_group(tagger: Tagger, split: str) -> tuple[Counter, Counter]:
    corpus = load_corpus(tagger.cfg)
    sents = getattr(corpus, split)
    pred = tagger.tag([list(s.tokens) for s in sents], doc_ids=[s.doc_id for s in sents])
    predicted = [set(tags.spans(p, tagger.output_scheme)) for p in pred]
    gold_n: Counter = Counter()
    found: Counter = Counter()
    for i, span, g in gold_groups(tagger, corpus, split):
        gold_n[g] += 1
        found[g] += span in predicted[i]
    return gold_n, found


def shares(tagger: Tagger) -> None:
    """The share of each group among the gold entities of dev and test: no prediction."""
    corpus = load_corpus(tagger.cfg)
    print("| split | entities | " + " | ".join(f"{g} %" for g in GROUPS) + " |")
    print("|---|---|" + "---|" * len(GROUPS))
    for split in ("dev", "test"):
        n = Counter(g for _, _, g in gold_groups(tagger, corpus, split))
        total = sum(n.values())
        cells = " | ".join(f"{100 * n[g] / total:.1f}" for g in GROUPS)
        print(f"| {split} | {total} | {cells} |")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    ap.add_argument("--split", default="dev", choices=("dev", "test"))
    ap.add_argument(
        "--shares",
        action="store_true",
        help="print each group's share of the gold entities of dev and test",
    )
    ap.add_argument("--mean", action="store_true", help="end with the mean recall of the runs")
    args = ap.parse_args(argv)
    if args.shares:
        shares(Tagger.load(args.runs[0].split("=", 1)[-1]))
        return 0
    print("| run | " + " | ".join(f"{g} recall" for g in GROUPS) + " | entities per group |")
    print("|---|" + "---|" * len(GROUPS) + "---|")
    recalls = []
    for name, run in (a.split("=", 1) for a in args.runs):
        gold_n, found = recall_by_group(Tagger.load(run), args.split)
        recalls.append([100 * found[g] / max(gold_n[g], 1) for g in GROUPS])
        cells = " | ".join(f"{r:.2f}" for r in recalls[-1])
        counts = " / ".join(str(gold_n[g]) for g in GROUPS)
        print(f"| {name} | {cells} | {counts} |")
    if args.mean:
        cells = " | ".join(f"{sum(col) / len(col):.2f}" for col in zip(*recalls, strict=True))
        print(f"| mean of {len(recalls)} | {cells} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
