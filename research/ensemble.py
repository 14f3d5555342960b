"""What averaging several trained models would give: a ceiling for what one model could learn
from the others (distillation), and a check of posterior decoding.

    python research/ensemble.py RUN_DIR [RUN_DIR ...] [--splits dev test]
    python research/ensemble.py RUN_DIR ... --gold-confidence train   # soft labels' worth

For each run, entity F1 with Viterbi decoding (as `rnner evaluate` scores it) and with
posterior decoding (the sequence that the scheme allows with the highest sum of log tag
marginals); then the ensemble of the first 1, 2, ... runs: their tag marginals averaged per
token, decoded the same way. The runs must share a tag set (the same scheme and training data).
Prints a markdown table; nothing here chooses anything, so test may be shown.
`--gold-confidence SPLIT` prints instead how sure each run is of the gold tags of SPLIT: the
mean marginal of the gold tag, and on how many tokens the most probable tag is not gold.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from rnner import tags
from rnner.crf import CRF
from rnner.metrics import entity_scores
from rnner.pipeline import encode_split, evaluate_split, load_corpus, sentence_marginals
from rnner.runs import load_run

CPU = torch.device("cpu")


def posterior_decode(marginals: list[np.ndarray], names: list[str], scheme: str) -> list[list[str]]:
    """The allowed tag sequence with the highest total log marginal, per sentence."""
    crf = CRF(len(names), *tags.constraints(names, scheme))  # zero scores: only the rules
    out: list[list[str]] = []
    for start in range(0, len(marginals), 256):
        chunk = marginals[start : start + 256]
        width = max(len(m) for m in chunk)
        logp = torch.full((len(chunk), width, len(names)), 0.0)
        mask = torch.zeros(len(chunk), width, dtype=torch.bool)
        for i, m in enumerate(chunk):
            logp[i, : len(m)] = torch.from_numpy(np.log(np.clip(m, 1e-12, None)))
            mask[i, : len(m)] = True
        ids = crf.decode(logp, mask)
        out += [[names[k] for k in ids[i, : len(m)].tolist()] for i, m in enumerate(chunk)]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run directories")
    ap.add_argument("--splits", nargs="+", default=["dev", "test"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gold-confidence", metavar="SPLIT")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    loaded = [load_run(r) for r in args.runs]
    names = loaded[0][1].tags.itos
    if any(v.tags.itos != names for _, v, _, _ in loaded):
        sys.exit("ensemble.py: the runs have different tag sets")
    cfg0, meta0 = loaded[0][2], loaded[0][3]
    scheme, source = cfg0.data.scheme, meta0.get("source_scheme", "IOB2")
    corpus = load_corpus(cfg0)
    if args.gold_confidence:
        sents = getattr(corpus, args.gold_confidence)
        gold = [tags.convert(list(s.tags), scheme, source) for s in sents]
        print("| run | tokens | mean P(gold tag) | most probable tag not gold |")
        print("|---|---|---|---|")
        ids = [np.array([names.index(t) for t in g]) for g in gold]
        for run, (model, vocabs, cfg, _) in zip(args.runs, loaded, strict=True):
            split = encode_split(sents, vocabs, cfg)
            marg = sentence_marginals(model, split, split.batches(64), CPU)
            p_gold = np.concatenate(
                [m[np.arange(len(g)), g] for m, g in zip(marg, ids, strict=True)]
            )
            wrong = sum(int((m.argmax(1) != g).sum()) for m, g in zip(marg, ids, strict=True))
            print(f"| {run} | {len(p_gold)} | {p_gold.mean():.4f} | {wrong} |")
        return 0

    def f1(pred: list[list[str]], gold: list[list[str]]) -> str:
        pred = [tags.convert(p, source, scheme) for p in pred]
        return f"{100 * entity_scores(gold, pred).f1:.2f}"

    single: dict[str, list[tuple[str, str]]] = {}
    joint: dict[str, list[str]] = {}
    for split in args.splits:
        sents = getattr(corpus, split)
        gold = [list(s.tags) for s in sents]
        total: list[np.ndarray] | None = None
        single[split], joint[split] = [], []
        for model, vocabs, cfg, _ in loaded:
            enc = encode_split(sents, vocabs, cfg)
            batches = enc.batches(64)
            marg = sentence_marginals(model, enc, batches, CPU)
            viterbi = evaluate_split(
                model, enc, batches, sents, vocabs, cfg, source, torch.device("cpu")
            )["entity"]["f1"]
            single[split].append(
                (f"{100 * viterbi:.2f}", f1(posterior_decode(marg, names, scheme), gold))
            )
            total = marg if total is None else [a + b for a, b in zip(total, marg, strict=True)]
            joint[split].append(f1(posterior_decode(total, names, scheme), gold))

    head = " | ".join(
        f"{s} {h}" for s in args.splits for h in ("Viterbi", "posterior", "ensemble of 1..k")
    )
    print(f"| k | run | {head} |")
    print("|---|---|" + "---|" * (3 * len(args.splits)))
    for k, run in enumerate(args.runs):
        cells = " | ".join(
            f"{single[s][k][0]} | {single[s][k][1]} | {joint[s][k]}" for s in args.splits
        )
        print(f"| {k + 1} | {run} | {cells} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
