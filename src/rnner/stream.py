"""Tagging large inputs in constant memory: read a chunk of lines, tag it in batches, write it,
repeat. Works on files and on stdin/stdout pipes.

Memory is bounded by the chunk (CHUNK_LINES lines or CHUNK_CHARS characters, whichever comes
first) and by the longest line accepted (MAX_LINE_CHARS); a longer line is never held whole.
On a pipe that goes quiet the chunk in hand is tagged and written (and stdout flushed) at once,
so `tail -f log | rnner predict` answers line by line while a fast producer still gets full
batches.

Every input line gives exactly one output record (jsonl and text formats), blank lines
included, so outputs line up with inputs; a bad line (not UTF-8, a NUL byte, too long) stops
the run with `path:LINE: reason`, or with `on_error="skip"` is dropped and counted.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from tqdm import tqdm

from . import files
from .conll import DOCSTART, InputError, Sentence, split_fields, token_problem
from .predict import Span, Tagger
from .resume import ChunkedOutput, Interrupted, model_identity

CHUNK_LINES = 2000  # lines (or sentences, for CoNLL input) tagged together
CHUNK_CHARS = 1_000_000  # a chunk also ends once it holds this many characters
MAX_LINE_CHARS = 100_000
READ_SIZE = 1 << 16
BOM = b"\xef\xbb\xbf"

T = TypeVar("T")


class DocStart:
    """A `-DOCSTART-` line of CoNLL input, passed through to the output."""


@dataclass
class _Counts:
    """What the reader has consumed and dropped; read by the progress bar and the summary."""

    path: str
    on_error: str
    bytes_read: int = 0
    skipped: int = 0

    def bad(self, lineno: int, reason: str) -> None:
        if self.on_error != "skip":
            raise InputError(self.path, lineno, reason)
        self.skipped += 1


def _would_block(stream: IO[bytes]) -> bool:
    """True when reading `stream` now would wait for a writer (a quiet pipe or terminal)."""
    try:
        ready, _, _ = select.select([stream.fileno()], [], [], 0)
    except (AttributeError, OSError, ValueError):  # no descriptor, or no select on it
        return False
    return not ready


def _raw_lines(stream: IO[bytes], max_bytes: int, counts: _Counts) -> Iterator[bytes | None]:
    """The lines of a binary stream, read in blocks of whatever is available.

    A line longer than `max_bytes` comes out cut to `max_bytes + 1` bytes (no newline) and the
    rest of it is read and dropped, so no line is ever held whole beyond the limit. `None`
    comes out when the next line is not there yet and reading would wait.
    """
    read = getattr(stream, "read1", stream.read)
    buf = b""
    pos = 0
    dropping = False  # inside the rest of an overlong line
    while True:
        end = buf.find(b"\n", pos)
        if end >= 0:
            if dropping:
                dropping = False
            else:
                yield buf[pos : end + 1]
            pos = end + 1
            continue
        rest = buf[pos:]
        if dropping:
            rest = b""
        elif len(rest) > max_bytes:
            yield rest[: max_bytes + 1]
            rest, dropping = b"", True
        if _would_block(stream):
            yield None
        block = read(READ_SIZE)
        if not block:
            if rest:
                yield rest
            return
        counts.bytes_read += len(block)
        buf, pos = rest + block, 0


def _lines(stream: IO[bytes], counts: _Counts) -> Iterator[tuple[int, str] | None]:
    """Numbered, decoded lines without their line ends; bad ones raise or are counted."""
    limit = MAX_LINE_CHARS
    lineno = 0
    for raw in _raw_lines(stream, 4 * limit + 2, counts):  # UTF-8: at most 4 bytes a character
        if raw is None:
            yield None
            continue
        lineno += 1
        if lineno == 1 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        if len(raw) > 4 * limit + 2:
            counts.bad(lineno, f"line longer than {limit} characters")
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            counts.bad(lineno, "not UTF-8 text")
            continue
        line = line.rstrip("\r\n")
        if "\x00" in line:
            counts.bad(lineno, "binary data (NUL byte)")
        elif len(line) > limit:
            counts.bad(lineno, f"line longer than {limit} characters")
        else:
            yield lineno, line


def _sentences(
    lines: Iterable[tuple[int, str] | None], counts: _Counts
) -> Iterator[Sentence | DocStart | None]:
    """Unlabelled CoNLL input, one line at a time: the word is the first column.

    The rules (and limits) are those of rnner.conll.parse_conll, whose line splitting and
    token checks it shares, but each problem belongs to one line, so a bad line can be
    skipped without losing the rest of its sentence.
    """
    tokens: list[str] = []
    ncols = start = 0
    doc = -1
    found = False
    for item in lines:
        if item is None:
            if not tokens:  # a sentence in progress waits for its blank line
                yield None
            continue
        lineno, line = item
        fields = split_fields(line)
        if not fields or fields[0] == DOCSTART:
            if tokens:
                yield Sentence(tuple(tokens), None, doc, start)
                tokens, found = [], True
            if fields:
                doc += 1
                yield DocStart()
            continue
        word = fields[0]
        if ncols and len(fields) != ncols:
            counts.bad(lineno, f"expected {ncols} columns, found {len(fields)}")
        elif problem := token_problem(word, len(tokens), start):
            counts.bad(lineno, problem)
        else:
            ncols = ncols or len(fields)
            if not tokens:
                start, doc = lineno, max(doc, 0)
            tokens.append(word)
    if tokens:
        yield Sentence(tuple(tokens), None, doc, start)
    elif not found:
        raise InputError(counts.path, None, "no sentences found")


def _chunks(items: Iterable[T | None], weight: Callable[[T], int]) -> Iterator[list[T]]:
    """Groups of at most CHUNK_LINES items or about CHUNK_CHARS weight; `None` ends a group
    early (the input went quiet)."""
    chunk: list[T] = []
    total = 0
    for item in items:
        if item is not None:
            chunk.append(item)
            total += weight(item)
            if len(chunk) < CHUNK_LINES and total < CHUNK_CHARS:
                continue
        if chunk:
            yield chunk
            chunk, total = [], 0
    if chunk:
        yield chunk


def inline(text: str, spans: list[Span]) -> str:
    """`[PER Peter Blackburn] visited [LOC Brussels].`"""
    out, pos = [], 0
    for s in spans:
        out.append(text[pos : s.start])
        out.append(f"[{s.label} {text[s.start : s.end]}]")
        pos = s.end
    out.append(text[pos:])
    return "".join(out)


def _open_in(path: str) -> tuple[IO[bytes], str, int | None]:
    """The input stream, its name for messages, and its size when it is a regular file."""
    if path == "-":
        stdin = sys.stdin.buffer
        with contextlib.suppress(AttributeError, OSError, ValueError):
            st = os.fstat(stdin.fileno())
            if stat.S_ISREG(st.st_mode):  # `rnner predict < big.txt`
                return stdin, "<stdin>", st.st_size
        return stdin, "<stdin>", None
    if os.path.isdir(path):
        raise InputError(path, None, "is a directory, not a file")
    source = open(path, "rb")  # noqa: SIM115 (closed by predict_stream)
    st = os.fstat(source.fileno())
    return source, path, st.st_size if stat.S_ISREG(st.st_mode) else None


def _write_conll(
    out: IO[str], items: list[Sentence | DocStart], tagger: Tagger, batch_size: int
) -> None:
    sents = [s for s in items if isinstance(s, Sentence)]
    tagged = iter(tagger.tag([s.tokens for s in sents], batch_size, [s.doc_id for s in sents]))
    for item in items:
        if isinstance(item, DocStart):
            out.write(f"{DOCSTART} O\n\n")
        else:
            tags = next(tagged)
            out.write("".join(f"{w} {t}\n" for w, t in zip(item.tokens, tags, strict=True)))
            out.write("\n")


def span_records(tagger: Tagger, texts: list[str], batch_size: int = 256) -> list[list[dict]]:
    """The span objects of each text, as `rnner predict --format jsonl` writes them and
    `rnner serve` answers them (one function, so the two never drift apart)."""
    return [[s.to_dict() for s in spans] for spans in tagger.predict_text(texts, batch_size)]


def _write_lines(
    out: IO[str], chunk: list[tuple[int, str]], tagger: Tagger, fmt: str, batch_size: int
) -> None:
    texts = [text for _, text in chunk]
    if fmt == "text":
        found = tagger.predict_text(texts, batch_size)
        out.write(
            "".join(inline(text, spans) + "\n" for text, spans in zip(texts, found, strict=True))
        )
        return
    records = span_records(tagger, texts, batch_size)
    for (lineno, text), spans in zip(chunk, records, strict=True):
        record = {"line": lineno, "text": text, "spans": spans}
        out.write(json.dumps(record, ensure_ascii=False) + "\n")


def _show_progress(progress: bool) -> bool:
    try:
        return progress and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def predict_stream(
    tagger: Tagger,
    input_path: str,
    output_path: str,
    fmt: str = "jsonl",
    on_error: str = "fail",
    batch_size: int = 256,
    progress: bool = True,
    resume: bool = False,
) -> int:
    """Tag `input_path` ('-': stdin) into `output_path` ('-': stdout). Returns an exit code.

    jsonl: one `{"line", "text", "spans"}` record per input line; text: each line with its
    entities marked inline; conll: tokens in the first column, one `word TAG` row out per
    token, a blank line after each sentence, `-DOCSTART-` lines kept. An output file is
    written as OUTPUT.partial and renamed at the end: on an error it is left as it was; on
    SIGINT/SIGTERM the run stops after the chunk in hand and returns 130, and `resume` goes on
    from there (rnner.resume). A progress bar (bytes read) goes to stderr on a terminal.
    """
    if fmt not in ("jsonl", "text", "conll"):
        raise ValueError(f"unknown format {fmt!r}")
    source, name, total = _open_in(input_path)
    counts = _Counts(name, on_error)
    bar = tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc="tagging",
        file=sys.stderr,
        disable=not _show_progress(progress),
        leave=False,
    )

    def done(out: IO[str]) -> None:
        out.flush()  # a pipe's reader sees each chunk as soon as it is tagged
        _release_memory()
        bar.update(counts.bytes_read - bar.n)
        if counts.skipped:
            bar.set_postfix(skipped=counts.skipped, refresh=False)

    try:
        with contextlib.ExitStack() as stack:
            if input_path != "-":
                stack.enter_context(source)
            if output_path != "-" and not files.is_regular_target(output_path):
                # /dev/null or a pipe: written as it goes, nothing to rename or resume
                if resume:
                    raise InputError(output_path, None, "--resume needs a regular output file")
                out: Any = stack.enter_context(open(output_path, "w", encoding="utf-8"))
                skip_done: Callable[[Any], Any] = iter
                chunks: Callable[[Any], Any] = iter
            elif output_path == "-":
                out = sys.stdout
                skip_done, chunks = iter, iter
            else:
                identity = {
                    "format": fmt,
                    "on_error": on_error,
                    "chunk_lines": CHUNK_LINES,
                    "chunk_chars": CHUNK_CHARS,
                    "model": model_identity(tagger.meta, tagger.cfg.to_dict()),
                }
                out = stack.enter_context(ChunkedOutput(output_path, input_path, identity, resume))
                skip_done, chunks = out.skip_done, out.chunks
            lines = _lines(source, counts)
            if fmt == "conll":
                for items in chunks(_chunks(skip_done(_sentences(lines, counts)), _weight)):
                    _write_conll(out, items, tagger, batch_size)
                    done(out)
            else:
                for chunk in chunks(_chunks(skip_done(lines), lambda item: len(item[1]) + 1)):
                    _write_lines(out, chunk, tagger, fmt, batch_size)
                    done(out)
    except Interrupted as e:
        print(str(e), file=sys.stderr)
        return 130
    finally:
        bar.close()
    if counts.skipped:
        print(f"{name}: skipped {counts.skipped} bad line(s)", file=sys.stderr)
    return 0


def _trim() -> Any:
    """glibc's malloc_trim, or None: tensors of ever-changing shapes leave freed memory
    scattered over the heap, which glibc keeps unless asked to give it back."""
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _trim()


def _release_memory() -> None:
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _weight(item: Sentence | DocStart) -> int:
    return sum(len(t) + 1 for t in item.tokens) if isinstance(item, Sentence) else 0
