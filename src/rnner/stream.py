"""Tagging large inputs in constant memory: read a chunk of lines, tag it in batches, write it,
repeat. Works on files and on stdin/stdout pipes."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from typing import IO

from tqdm import tqdm

from .conll import InputError, parse_conll
from .predict import Tagger

CHUNK_LINES = 2000
MAX_LINE_CHARS = 100_000


def _lines(stream: IO[bytes], path: str, on_error: str, skipped: list[int],
           bar: tqdm | None) -> Iterator[tuple[int, str]]:
    """Decoded lines with their numbers; undecodable ones raise or are skipped."""
    for lineno, raw in enumerate(stream, 1):
        if bar is not None:
            bar.update(len(raw))
        try:
            line = raw.decode("utf-8")
            if "\x00" in line:
                raise ValueError("binary data (NUL byte)")
            if len(line) > MAX_LINE_CHARS:
                raise ValueError(f"line longer than {MAX_LINE_CHARS} characters")
        except (UnicodeDecodeError, ValueError) as e:
            if on_error == "skip":
                skipped[0] += 1
                continue
            reason = "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else str(e)
            raise InputError(path, lineno, reason) from None
        yield lineno, line.rstrip("\r\n")


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def inline(text: str, spans: list) -> str:
    """`[PER Peter Blackburn] visited [LOC Brussels].`"""
    out, pos = [], 0
    for s in spans:
        out.append(text[pos : s.start])
        out.append(f"[{s.label} {text[s.start : s.end]}]")
        pos = s.end
    out.append(text[pos:])
    return "".join(out)


@contextlib.contextmanager
def _open_out(path: str) -> Iterator[IO[str]]:
    if path == "-":
        yield sys.stdout
        return
    from .files import atomic_open

    with atomic_open(path, "w") as f:
        yield f


def predict_stream(tagger: Tagger, input_path: str, output_path: str, fmt: str = "jsonl",
                   on_error: str = "fail", batch_size: int = 256, progress: bool = True) -> int:
    """Tag `input_path` ('-': stdin) into `output_path` ('-': stdout). Returns an exit code."""
    if input_path != "-" and os.path.isdir(input_path):
        raise InputError(input_path, None, "is a directory, not a file")
    source = sys.stdin.buffer if input_path == "-" else open(input_path, "rb")  # noqa: SIM115
    name = "<stdin>" if input_path == "-" else input_path
    total = None if input_path == "-" else os.path.getsize(input_path)
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="tagging", file=sys.stderr,
               disable=not progress or total is None, leave=False)
    skipped = [0]
    try:
        with source, _open_out(output_path) as out:
            lines = _lines(source, name, on_error, skipped, bar)
            if fmt == "conll":
                sents = parse_conll((line for _, line in lines), name, labelled=False)
                for chunk in _chunks(sents, CHUNK_LINES):
                    tags = tagger.tag([s.tokens for s in chunk], batch_size,
                                      [s.doc_id for s in chunk])
                    for s, ts in zip(chunk, tags, strict=True):
                        out.write("".join(f"{w} {t}\n" for w, t in zip(s.tokens, ts, strict=True)))
                        out.write("\n")
            else:
                for chunk in _chunks(lines, CHUNK_LINES):
                    spans = tagger.predict_text([text for _, text in chunk], batch_size)
                    for (lineno, text), found in zip(chunk, spans, strict=True):
                        if fmt == "text":
                            out.write(inline(text, found) + "\n")
                        else:
                            record = {"line": lineno, "text": text,
                                      "spans": [s.to_dict() for s in found]}
                            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    finally:
        bar.close()
    if skipped[0]:
        print(f"{name}: skipped {skipped[0]} bad line(s)", file=sys.stderr)
    return 0
