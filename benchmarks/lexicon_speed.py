"""Tagging speed with and without lexicon features, side by side (docs/accuracy-levers.md).

    python benchmarks/lexicon_speed.py --lexicon lexicon.jsonl [--config configs/conll03.toml]

Trains two throwaway models of the config for one epoch on its first `--sentences` training
sentences, one with `model.lexicon` and one without (their accuracy is not the point: the
network's size is the config's), then tags the whole CoNLL-2003 dev file with each through
`Tagger.tag` (encoding, lexicon matching, network, decoding), the two interleaved (ABBA
order), `--reps` times after one untimed pass of each; prints the median tokens/s of each,
the median of the paired ratios (steadier than the ratio of medians on a busy machine), and
the time of the lexicon matching alone per token. `--keep DIR` keeps the two models there
and reuses them on the next call.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from rnner.bench import cpu_model
from rnner.config import Config
from rnner.conll import read_conll
from rnner.data import resolve_split
from rnner.lexicon import Lexicon
from rnner.predict import Tagger
from rnner.training import fit


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lexicon", required=True)
    ap.add_argument("--config", default="configs/conll03.toml")
    ap.add_argument("--sentences", type=int, default=200)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--limit", type=int, default=0, help="tag the first N dev sentences (0: all)")
    ap.add_argument("--keep", help="a folder for the two models (reused when there)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = [
        f"data.max_sentences={args.sentences}",
        "train.epochs=1",
        f"train.threads={args.threads}",
        "train.device='cpu'",
    ]
    variants = {"plain": base, "lexicon": base + [f"model.lexicon={args.lexicon!r}"]}
    dev = read_conll(resolve_split("conll2003", "dev"))[: args.limit or None]
    sents = [list(s.tokens) for s in dev]
    docs = [s.doc_id for s in dev]
    tokens = sum(map(len, sents))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp)
        taggers = {}
        for name, sets in variants.items():
            if not (root / name / "metrics.json").is_file():
                fit(Config.load(args.config, sets), root / name, progress=False)
            taggers[name] = Tagger.load(root / name)
        times: dict[str, list[float]] = {name: [] for name in taggers}
        for r in range(-1, args.reps):  # -1: one untimed pass of each (the first is slower)
            for name in list(taggers)[:: 1 if r % 2 == 0 else -1]:
                start = time.perf_counter()
                taggers[name].tag(sents, args.batch_size, docs)
                if r >= 0:
                    times[name].append(time.perf_counter() - start)
    lexicon = Lexicon.load(args.lexicon)
    match = []
    for _ in range(args.reps):
        start = time.perf_counter()
        for s in sents:
            lexicon.match(s)
        match.append(time.perf_counter() - start)
    rate = {name: tokens / statistics.median(t) for name, t in times.items()}
    print(
        f"{args.config}, CoNLL-2003 dev: {len(sents)} sentences ({tokens} tokens), "
        f"{args.threads} threads, batch {args.batch_size}, median of {args.reps}; {cpu_model()}\n"
    )
    print("| model | tagging tokens/s |")
    print("|---|---|")
    for name, r in rate.items():
        print(f"| {name} | {r:,.0f} |")
    paired = statistics.median(p / q for p, q in zip(times["plain"], times["lexicon"], strict=True))
    print(f"\nspeed ratio lexicon / plain, median of the paired reps: {paired:.3f}")
    per_token = statistics.median(match) / tokens * 1e6
    print(f"lexicon matching alone: {per_token:.2f} µs per token ({len(lexicon)} phrases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
