"""Dynamic micro-batching: requests that arrive together are tagged in one model call.

On a CPU the model's cost per token falls steeply with batch size (one matrix product for 64
sentences costs little more than for one), so a server that tags each request alone wastes
most of its time. Requests go into a queue; a worker thread takes the first, waits at most
`max_wait_ms` for more, stops at `max_tokens`, tags them all together and hands each request
its own part of the answer. The event loop never runs the model. With `workers` > 1, as many
threads take batches from the one queue and tag them side by side (torch releases the GIL
while it computes), each with its own copy of the model, so no module is shared between
threads.

A text's spans never depend on its batch-mates: every text (and every `tokens` request) is
its own document for the model, so document-level features pool over it alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..predict import Span, Tagger, tokenize
from ..stream import _release_memory, span_records

TEXTS = "texts"
TOKENS = "tokens"
FILL = 0.75  # of the largest recent batch: wait no longer once a batch holds this many
RECENT = 4  # batches remembered for that


@dataclass
class Job:
    """One request's work: raw texts, or one document of pre-tokenised sentences."""

    kind: str
    items: Sequence[Any]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    tokens: int = 0
    queued: float = field(default_factory=time.perf_counter)


def count_tokens(kind: str, items: Sequence[Any]) -> int:
    if kind == TOKENS:
        return sum(len(s) for s in items)
    return sum(len(tokenize(t)) for t in items)


def token_span_records(
    tagger: Tagger, docs: Sequence[Sequence[Sequence[str]]], batch_size: int = 256
) -> list[list[list[dict]]]:
    """Spans of pre-tokenised sentences: each element of `docs` is one document (one
    request's sentences); offsets are into the sentence's tokens joined by single spaces,
    as `Tagger.predict(tokens)` gives them."""
    flat = [list(s) for doc in docs for s in doc]
    doc_ids = [d for d, doc in enumerate(docs) for _ in doc]
    tagged = iter(tagger.tag(flat, batch_size, doc_ids))
    out: list[list[list[dict]]] = []
    from .. import tags

    for doc in docs:
        per_sentence = []
        for sent in doc:
            seq = next(tagged)
            starts, pos = [], 0
            for t in sent:
                starts.append(pos)
                pos += len(t) + 1
            text = " ".join(sent)
            spans = []
            for label, i, j in tags.spans(seq, tagger.output_scheme):
                a, b = starts[i], starts[j - 1] + len(sent[j - 1])
                spans.append(Span(text[a:b], label, a, b, i, j).to_dict())
            per_sentence.append(spans)
        out.append(per_sentence)
    return out


class MicroBatcher:
    """Queue + worker threads running the model; `await submit(kind, items)`."""

    def __init__(
        self,
        tagger: Tagger,
        max_wait_ms: float = 2.0,
        max_tokens: int = 8192,
        on_batch: Callable[[int, int, float], None] | None = None,
        workers: int = 1,
    ):
        if workers < 1:
            raise ValueError(f"workers must be 1 or more, not {workers}")
        self.max_wait = max_wait_ms / 1000.0
        self.max_tokens = max_tokens
        self.on_batch = on_batch  # (requests, tokens, seconds) of each model call
        self._queue: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._taggers = [tagger] + [copy.deepcopy(tagger) for _ in range(workers - 1)]
        self._threads = [
            threading.Thread(target=self._run, args=(t,), name=f"rnner-batcher-{i}", daemon=True)
            for i, t in enumerate(self._taggers)
        ]
        for thread in self._threads:
            thread.start()

    async def submit(self, kind: str, items: Sequence[Any]) -> tuple[list[Any], int]:
        """The span records of each item (texts: one list per text; tokens: one list per
        sentence) and the number of tokens tagged."""
        loop = asyncio.get_running_loop()
        job = Job(kind, items, loop.create_future(), loop)
        self._queue.put(job)
        return await job.future

    def close(self) -> None:
        """Finish what is queued, then stop the workers."""
        for _ in self._threads:
            self._queue.put(None)  # one stop for each: a worker takes one and returns
        for thread in self._threads:
            thread.join()

    def _collect(self, first: Job, recent: deque[int]) -> tuple[list[Job], Job | None, bool]:
        """`first`, whatever is queued, and what arrives within the wait, up to the token cap;
        returns the batch, a job held over for the next batch, and whether to stop afterwards.

        The wait ends early once the batch holds `FILL` of the largest recent batch: clients
        that were answered together come back together, and tagging them together is much
        cheaper than tagging the first few alone (the rest would queue behind that call). A
        lone client (recent batches of one) never waits. `recent` is this worker's own."""
        batch, total = [first], first.tokens
        want = math.ceil(FILL * max(recent, default=1))
        deadline = first.queued + self.max_wait
        while total < self.max_tokens:
            remaining = deadline - time.perf_counter()
            try:
                job = (
                    self._queue.get(timeout=remaining)
                    if remaining > 0 and len(batch) < want
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                break
            if job is None:
                return batch, None, True
            job.tokens = count_tokens(job.kind, job.items)
            if total + job.tokens > self.max_tokens:
                return batch, job, False
            batch.append(job)
            total += job.tokens
        return batch, None, False

    def _run(self, tagger: Tagger) -> None:
        recent: deque[int] = deque(maxlen=RECENT)  # requests in this worker's last batches
        held: Job | None = None
        while True:
            job, held = held, None
            if job is None:
                job = self._queue.get()
                if job is None:  # close(): everything queued before it is done
                    return
                job.tokens = count_tokens(job.kind, job.items)
            batch, held, stop = self._collect(job, recent)
            recent.append(len(batch))
            self._tag(tagger, batch)
            if stop:
                return
            if held is None and self._queue.empty():
                # idle: give freed tensor memory back (batches of ever-changing shapes leave
                # it scattered, and glibc would keep it), as `rnner predict` does per chunk
                _release_memory()

    def _tag(self, tagger: Tagger, batch: list[Job]) -> None:
        start = time.perf_counter()
        texts = [j for j in batch if j.kind == TEXTS]
        docs = [j for j in batch if j.kind == TOKENS]
        try:
            results: dict[int, list[Any]] = {}
            if texts:
                flat = [t for j in texts for t in j.items]
                records = iter(span_records(tagger, flat))
                for j in texts:
                    results[id(j)] = [next(records) for _ in j.items]
            if docs:
                for j, r in zip(
                    docs, token_span_records(tagger, [j.items for j in docs]), strict=True
                ):
                    results[id(j)] = r
        except Exception as e:  # a model failure answers every request of the batch
            for loop, jobs in _by_loop(batch).items():
                _settle(loop, [(j, None, e) for j in jobs])
            return
        if self.on_batch is not None:
            self.on_batch(len(batch), sum(j.tokens for j in batch), time.perf_counter() - start)
        for loop, jobs in _by_loop(batch).items():
            _settle(loop, [(j, (results[id(j)], j.tokens), None) for j in jobs])


def _by_loop(batch: list[Job]) -> dict[asyncio.AbstractEventLoop, list[Job]]:
    out: dict[asyncio.AbstractEventLoop, list[Job]] = {}
    for j in batch:
        out.setdefault(j.loop, []).append(j)
    return out


def _settle(
    loop: asyncio.AbstractEventLoop,
    outcomes: list[tuple[Job, Any, BaseException | None]],
) -> None:
    """Hand each job its result or exception on its event loop: one wake-up of the loop for
    the whole batch, not one per request."""

    def settle() -> None:
        for job, result, exception in outcomes:
            if job.future.done():  # the client went away and the request was cancelled
                continue
            if exception is not None:
                job.future.set_exception(exception)
            else:
                job.future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop is already closed
        loop.call_soon_threadsafe(settle)
