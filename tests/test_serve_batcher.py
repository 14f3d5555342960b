"""The micro-batcher's waiting rule, on the shipped model without HTTP: a request waits for
batch-mates only while recent batches held several requests."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from rnner.predict import Tagger
from rnner.serve.batcher import RECENT, TEXTS, MicroBatcher

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = "Peter Blackburn visited Brussels on Monday."
WAIT = 0.4  # seconds: far above a one-sentence model call, so a wait is plain to see


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    return Tagger.load(ROOT / "models" / "conll03-en")


def test_lone_requests_wait_only_after_concurrent_ones(tagger: Tagger) -> None:
    sizes: list[int] = []
    batcher = MicroBatcher(tagger, 1000 * WAIT, on_batch=lambda n, tokens, s: sizes.append(n))

    async def timed() -> float:
        t0 = time.perf_counter()
        records, tokens = await batcher.submit(TEXTS, [SENTENCE])
        assert tokens == 7 and [s["text"] for s in records[0]] == ["Peter Blackburn", "Brussels"]
        return time.perf_counter() - t0

    async def scenario() -> tuple[float, list[float], float]:
        first = await timed()  # nothing before it: no reason to wait
        # five at once: the first may be taken alone, the rest then come as one batch
        await asyncio.gather(*(timed() for _ in range(5)))
        after = [await timed() for _ in range(RECENT)]  # each waits for company in vain...
        return first, after, await timed()  # ...until the batches remembered held one each

    try:
        first, after, last = asyncio.run(scenario())
    finally:
        batcher.close()
    assert first < WAIT / 2
    assert max(sizes[1 : -RECENT - 1]) >= 4, sizes
    assert all(t >= WAIT * 0.9 for t in after), after
    assert last < WAIT / 2
    assert sizes[-RECENT - 1 :] == [1] * (RECENT + 1)
