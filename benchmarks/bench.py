"""Benchmark a config's model: `python benchmarks/bench.py [--quick] [--json] ...`.

A thin wrapper so the benchmark runs from a checkout; the code is `rnner.bench` (also
`rnner bench`). See docs/performance.md.
"""

import sys

from rnner.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
