"""Articles per split and their lengths in tokens: `python research/doc_lengths.py [DIR]`.

The numbers behind `data.max_context_tokens` for whole-article context (DIR defaults to
../shared/data/conll2003 beside the checkout).
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

from rnner.conll import read_conll


def main(argv: list[str]) -> int:
    root = Path(argv[0]) if argv else Path(__file__).resolve().parents[2] / "shared/data/conll2003"
    print("| split | articles | mean tokens | longest |")
    print("|---|---|---|---|")
    for split in ("train", "dev", "test"):
        sizes = Counter()
        for s in read_conll(root / f"{split}.txt"):
            sizes[s.doc_id] += len(s)
        n = list(sizes.values())
        print(f"| {split} | {len(n)} | {sum(n) / len(n):.0f} | {max(n)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
