"""The micro-batcher's waiting rule, on the shipped model without HTTP: a request waits for
batch-mates only while recent batches held several requests."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from conftest import CONLL, needs_conll

from rnner.conll import read_conll
from rnner.predict import Tagger
from rnner.serve.batcher import RECENT, TEXTS, MicroBatcher
from rnner.stream import span_records

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


def test_two_workers_tag_side_by_side_each_with_its_own_model(tagger: Tagger) -> None:
    """With `workers=2` two threads take batches from one queue, each with its own copy of the
    model (no module shared between threads), and every request gets exactly the spans it
    gets alone; close() stops both after the queue is done."""
    needs_conll()
    texts = [" ".join(s.tokens) for s in read_conll(CONLL / "dev.txt")[:120]]
    alone = span_records(tagger, texts)
    threads: set[str] = set()

    def note_thread(n: int, tokens: int, seconds: float) -> None:
        threads.add(threading.current_thread().name)

    # batches of at most 50 tokens: many batches, so both workers take some
    batcher = MicroBatcher(tagger, 2.0, 50, on_batch=note_thread, workers=2)
    models = {id(t.model) for t in (tagger, *batcher._taggers)}
    assert len(models) == 2  # the first worker uses `tagger`, the second a copy

    async def one(text: str) -> list[dict]:
        records, _ = await batcher.submit(TEXTS, [text])
        return records[0]

    async def scenario() -> list[list[dict]]:
        return list(await asyncio.gather(*(one(t) for t in texts)))

    try:
        got = asyncio.run(scenario())
    finally:
        batcher.close()
    assert got == alone
    assert threads == {"rnner-batcher-0", "rnner-batcher-1"}, threads
    assert not any(t.is_alive() for t in batcher._threads)


def test_workers_must_be_positive(tagger: Tagger) -> None:
    with pytest.raises(ValueError, match="workers must be 1 or more, not 0"):
        MicroBatcher(tagger, workers=0)
