"""Interrupting and resuming `rnner predict --input FILE --output FILE`.

While it runs, the output is written to `FILE.partial` and, after every finished chunk,
`FILE.partial.json` records how many input items (lines; sentences and -DOCSTART- lines for
CoNLL input) are done and how many output bytes they gave. On SIGINT or SIGTERM the current
chunk is finished, both files are kept, the command says how far it got and exits 130; a
second signal stops at once (the chunk in hand is then redone on resume). `--resume` checks
that input, format and model are those of the interrupted run, cuts `FILE.partial` back to the
last finished chunk, skips the items already done and goes on; since chunks are cut at the
same places as in one uninterrupted run, the finished output is byte-identical to it. On
success `FILE.partial` becomes `FILE` and the state file is removed; on an error both are
removed and `FILE` is left as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import FrameType
from typing import IO, Any, TypeVar

from . import files
from .errors import InputError

T = TypeVar("T")
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """Stopped by a signal after a finished chunk; the message says how far it got."""


class ChunkedOutput:
    """The output file of a resumable run; `write` text, then `chunk_done(items)`."""

    def __init__(
        self, output: str, input_path: str, identity: dict[str, Any], resume: bool = False
    ):
        self.path = Path(output)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.state_path = self.path.with_name(self.path.name + ".partial.json")
        self.input_path = input_path
        self.identity = {**identity, **_input_identity(input_path)}
        self.resume = resume
        self.done = 0  # input items in finished chunks
        self.skip = 0  # of them, already done by an interrupted run
        self.stop: str | None = None  # the name of the signal that asked to stop
        self._handlers: dict[int, Any] = {}
        self._file: IO[str] | None = None

    # --- the context: open, and on the way out rename, keep or remove -------------------------

    def __enter__(self) -> ChunkedOutput:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.resume:
            state = self._load_state()
            self.done = self.skip = int(state["items"])
            with open(self.partial, "r+b") as f:  # drop a chunk that was cut short
                f.truncate(int(state["output_bytes"]))
            self._file = open(self.partial, "a", encoding="utf-8", newline="")  # noqa: SIM115
        else:
            self._file = open(self.partial, "w", encoding="utf-8", newline="")  # noqa: SIM115
            self._save_state()
        self._catch_signals()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        self._restore_signals()
        assert self._file is not None
        if kind is None:
            self._sync()
            self._file.close()
            os.replace(self.partial, self.path)
            self.state_path.unlink(missing_ok=True)
            return
        self._file.close()
        if issubclass(kind, Interrupted | KeyboardInterrupt):
            return  # keep FILE.partial and its state for --resume
        for p in (self.partial, self.state_path):
            p.unlink(missing_ok=True)

    # --- writing ----------------------------------------------------------------------------

    def write(self, text: str) -> int:
        assert self._file is not None
        return self._file.write(text)

    def flush(self) -> None:
        assert self._file is not None
        self._file.flush()

    def chunks(self, chunks: Iterable[list[T]]) -> Iterator[list[T]]:
        """`chunks`, each recorded as done once the caller has written it; after a signal,
        the next chunk is not started (when none is left the run simply finishes)."""
        for chunk in chunks:
            if self.stop is not None:
                raise Interrupted(
                    f"{self.stop}: stopped after {self.done} input "
                    f"{'items' if self.identity['format'] == 'conll' else 'lines'} of "
                    f"{self.input_path}; partial output in {self.partial}; the same command "
                    "with --resume continues from there"
                )
            yield chunk
            self.done += len(chunk)
            self._sync()
            self._save_state()

    def skip_done(self, items: Iterable[T | None]) -> Iterator[T | None]:
        """`items` without the first `self.skip` (done before the interruption)."""
        left = self.skip
        for item in items:
            if left and item is not None:
                left -= 1
                continue
            yield item

    # --- state --------------------------------------------------------------------------------

    def _sync(self) -> None:
        assert self._file is not None
        self._file.flush()
        os.fsync(self._file.fileno())

    def _save_state(self) -> None:
        size = self.partial.stat().st_size if self.partial.exists() else 0
        files.write_json(
            self.state_path, {"items": self.done, "output_bytes": size, **self.identity}
        )

    def _load_state(self) -> dict[str, Any]:
        where = str(self.state_path)
        if not self.state_path.is_file() or not self.partial.is_file():
            raise InputError(
                where,
                None,
                "nothing to resume (no interrupted run of this output); run without --resume",
            )
        try:
            state = json.loads(self.state_path.read_text(encoding="utf-8"))
            int(state["items"]), int(state["output_bytes"])
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(
                where, None, f"damaged resume state ({e}); run without --resume"
            ) from None
        for key, value in self.identity.items():
            if state.get(key) != value:
                raise InputError(
                    where,
                    None,
                    f"the interrupted run had a different {key} "
                    f"({state.get(key)!r}, now {value!r}); run "
                    "without --resume",
                )
        if self.partial.stat().st_size < int(state["output_bytes"]):
            raise InputError(
                where, None, f"{self.partial} is shorter than recorded; run without --resume"
            )
        return state

    # --- signals --------------------------------------------------------------------------------

    def _catch_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(sig: int, frame: FrameType | None) -> None:
            if self.stop is not None:  # the second signal: stop now
                raise KeyboardInterrupt
            self.stop = signal.Signals(sig).name

        for sig in SIGNALS:
            self._handlers[sig] = signal.signal(sig, handler)

    def _restore_signals(self) -> None:
        for sig, old in self._handlers.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, old)
        self._handlers.clear()


def _input_identity(path: str) -> dict[str, Any]:
    if path == "-":
        return {"input": "-"}
    st = os.stat(path)
    return {
        "input": str(Path(path).resolve()),
        "input_bytes": st.st_size,
        "input_mtime_ns": st.st_mtime_ns,
    }


def model_identity(meta: dict[str, Any], config: dict[str, Any]) -> str:
    """A digest of a model's config and provenance: a resumed run must use the same model."""
    blob = json.dumps({"meta": meta, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
