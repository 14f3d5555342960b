"""Move the vectors of words training never saw into the fine-tuned space: a screen.

A trained model's word vectors drifted from GloVe wherever training showed the word; the
dev/test words that only GloVe knows kept their original vector, which the network no longer
reads the same way. Fitting a linear map from the original vectors to the tuned ones over the
training words (ridge regression, Madhyastha et al. 2016's idea) and applying it to the
words training never saw puts them where the network expects words like them. Needs no
training: it rewrites a copy of the model in memory and scores it.

    python research/oov_map.py RUN_DIR [RUN_DIR ...] [--alpha 1 10 100] [--splits dev test]

Prints, per run, entity F1 as saved (ridge strength 0) and with each ridge strength, then how
far fine-tuning moved the training words' vectors (the median of |tuned - original| /
|original| by training frequency). Dev decides; test is printed because nothing is chosen
on it.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

import numpy as np
import torch

from rnner import embeddings
from rnner.pipeline import encode_split, evaluate_split, load_corpus
from rnner.runs import load_run
from rnner.training import pretrained_matrix
from rnner.vocab import word_key


def fit_map(src: np.ndarray, dst: np.ndarray, alpha: float) -> np.ndarray:
    """W of shape [dim + 1, dim] minimising |[src 1] W - dst|^2 + alpha |W|^2 (bias unpenalised)."""
    x = np.hstack([src, np.ones((len(src), 1))]).astype(np.float64)
    reg = alpha * np.eye(x.shape[1])
    reg[-1, -1] = 0.0
    return np.linalg.solve(x.T @ x + reg, x.T @ dst.astype(np.float64))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--alpha", nargs="+", type=float, default=[1.0, 10.0, 100.0])
    ap.add_argument("--splits", nargs="+", default=["dev", "test"])
    ap.add_argument(
        "--min-count", type=int, default=1, help="fit only on training words seen this often"
    )
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    cols = " | ".join(f"{s} {a:g}" for a in [0.0, *args.alpha] for s in args.splits)
    print(f"| run | train words fitted | unseen words moved | {cols} |")
    print("|---|---|---|" + "---|" * ((1 + len(args.alpha)) * len(args.splits)))
    pretrained = None
    drift_rows: list[str] = []
    for run in args.runs:
        model, vocabs, cfg, meta = load_run(run)
        corpus = load_corpus(cfg)
        pretrained = pretrained or embeddings.load(cfg.model.embeddings)
        counts = Counter(word_key(t, vocabs.lowercase) for s in corpus.train for t in s.tokens)
        original, hit = pretrained_matrix(vocabs, corpus, pretrained, np.random.default_rng(0))
        tuned = model.words.weight.detach().float().numpy().copy()
        seen = np.array([counts[w] >= args.min_count for w in vocabs.words.itos])
        unseen = np.array([w not in counts for w in vocabs.words.itos])
        fit, move = seen & hit, unseen & hit
        source = meta.get("source_scheme", "IOB2")
        cells = []
        encoded = {s: encode_split(getattr(corpus, s), vocabs, cfg) for s in args.splits}
        for alpha in [0.0, *args.alpha]:
            weights = tuned.copy()
            if alpha > 0:
                w = fit_map(original[fit], tuned[fit], alpha)
                x = np.hstack([original[move], np.ones((int(move.sum()), 1))])
                weights[move] = (x @ w).astype(np.float32)
            with torch.no_grad():
                model.words.weight.copy_(torch.from_numpy(weights))
            for s in args.splits:
                enc = encoded[s]
                f1 = evaluate_split(
                    model,
                    enc,
                    enc.batches(64),
                    getattr(corpus, s),
                    vocabs,
                    cfg,
                    source,
                    torch.device("cpu"),
                )["entity"]["f1"]
                cells.append(f"{100 * f1:.2f}")
        print(f"| {run} | {int(fit.sum())} | {int(move.sum())} | {' | '.join(cells)} |")
        freq = np.array([counts[w] for w in vocabs.words.itos])
        moved = np.linalg.norm(tuned - original, axis=1)
        moved /= np.maximum(np.linalg.norm(original, axis=1), 1e-9)
        bands = [(1, 1), (2, 4), (5, 19), (20, 99), (100, None)]
        cells = []
        for lo, hi in bands:
            band = hit & (freq >= lo) & (freq <= (hi or freq.max()))
            cells.append(f"{np.median(moved[band]):.3f} ({int(band.sum())})")
        drift_rows.append(f"| {run} | {' | '.join(cells)} |")
    heads = " | ".join(
        f"{lo}" if lo == hi else f"{lo}-{hi}" if hi else f"{lo}+" for lo, hi in bands
    )
    print(
        "\nMedian relative drift of the training words' vectors (and how many words), by "
        "their count in train:\n"
    )
    print(f"| run | {heads} |")
    print("|---|" + "---|" * len(bands))
    print("\n".join(drift_rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
