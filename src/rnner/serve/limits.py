"""What one request may hold (kept apart from the app so the CLI can show the defaults
without importing FastAPI)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """The defaults keep one request well under a second of model time on one CPU core while
    covering any paragraph-sized use; a request past a limit gets a 413 naming it."""

    max_body_bytes: int = 1_000_000
    max_texts: int = 1_000  # texts, or sentences of a `tokens` request
    max_text_chars: int = 20_000  # of one text, or of one sentence's tokens joined
