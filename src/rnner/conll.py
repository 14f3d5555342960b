"""Reading and writing CoNLL column files.

Input files come from users, so every problem is reported as `path:line: message` with the
exact line to fix, never as a traceback from deep inside training.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from rnner.errors import InputError
from rnner.files import atomic_open

DOCSTART = "-DOCSTART-"
TAG_PREFIXES = frozenset("BIES")
# Limits that guard memory and training time against a file that lacks blank lines or is not
# text; the reader of files and the streaming reader (rnner.stream) both apply them.
MAX_TOKENS = 10_000  # tokens in one sentence
MAX_TOKEN_CHARS = 1_000

# Columns are split on ASCII blanks only: a token may legitimately hold a no-break space.
_BLANKS = " \t\f\v\r\n"
_SEP = re.compile(r"[ \t\f\v]+")
_UNWRITABLE = re.compile(r"[ \t\f\v\r\n]")
# Control bytes that never occur in text; tab, LF, VT, FF and CR are allowed.
_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1f]")


@dataclass(frozen=True, slots=True)
class Sentence:
    """One sentence of a column file; `line` points users back to it in their file."""

    tokens: tuple[str, ...]
    tags: tuple[str, ...] | None  # None for unlabelled input
    doc_id: int = 0  # index of the -DOCSTART- document, counted from 0
    line: int = 0  # 1-based line of the first token

    def __post_init__(self) -> None:
        if self.tags is not None and len(self.tags) != len(self.tokens):
            raise ValueError(f"{len(self.tokens)} tokens but {len(self.tags)} tags")

    def __len__(self) -> int:
        return len(self.tokens)


def _check_tag(tag: str, path: str, line: int) -> None:
    prefix, sep, kind = tag.partition("-")
    if not sep or not kind or not prefix:
        raise InputError(
            path, line, f"invalid tag '{tag}': expected 'O' or PREFIX-TYPE, e.g. B-PER"
        )
    if prefix not in TAG_PREFIXES:
        raise InputError(path, line, f"unknown tag prefix '{prefix}' in '{tag}'")


def _column(index: int, ncols: int, what: str, path: str, line: int) -> int:
    """Normalise a possibly negative column index against the file's column count."""
    if not -ncols <= index < ncols:
        raise InputError(path, line, f"{what} column {index} does not exist: found {ncols} columns")
    return index % ncols


def split_fields(line: str) -> list[str]:
    """The columns of one line, split on ASCII blanks only (a token may hold a no-break
    space); a blank line, line end or not, gives []."""
    text = line.strip(_BLANKS)
    if not text:
        return []
    # str.split is several times faster than the regex; on ASCII text it splits on the
    # same blanks (plus control characters that read_text rejects anyway).
    return text.split() if text.isascii() else _SEP.split(text)


def token_problem(
    word: str,
    tokens: int,
    start: int,
    max_tokens: int | None = MAX_TOKENS,
    max_token_chars: int | None = MAX_TOKEN_CHARS,
) -> str | None:
    """Why `word` cannot join a sentence that holds `tokens` tokens from line `start`, or
    None; a limit of None is lifted."""
    if max_token_chars is not None and len(word) > max_token_chars:
        return f"token of {len(word)} characters exceeds the limit of {max_token_chars}"
    if tokens and tokens == max_tokens:
        return f"sentence starting at line {start} exceeds {max_tokens} tokens"
    return None


def parse_conll(
    lines: Iterable[str],
    path: str = "<input>",
    *,
    word_column: int = 0,
    tag_column: int = -1,
    labelled: bool = True,
    max_tokens: int | None = MAX_TOKENS,
    max_token_chars: int | None = MAX_TOKEN_CHARS,
) -> Iterator[Sentence]:
    """Yield the sentences of column-format `lines`, raising InputError at the first problem.

    Lines may keep their line endings. The limits guard memory and training time against a
    file that lacks blank lines or is not text; pass None to lift one.
    """
    ncols = 0  # columns of the first token line; every token line must match it
    wcol = tcol = 0
    doc_id = -1  # becomes 0 with the first document or the first sentence
    start = 0
    found = False
    tokens: list[str] = []
    tags: list[str] = []
    known_tags = {"O"}

    def sentence() -> Sentence:
        return Sentence(tuple(tokens), tuple(tags) if labelled else None, doc_id, start)

    for lineno, raw in enumerate(lines, 1):
        fields = split_fields(raw)
        if not fields:
            if tokens:
                yield sentence()
                found = True
                tokens, tags = [], []
            continue
        if "\x00" in raw:
            raise InputError(path, lineno, "binary data (NUL byte)")
        if fields[0] == DOCSTART:
            if tokens:
                yield sentence()
                found = True
                tokens, tags = [], []
            doc_id += 1
            continue
        if len(fields) != ncols:
            if ncols:
                raise InputError(path, lineno, f"expected {ncols} columns, found {len(fields)}")
            ncols = len(fields)
            if labelled and ncols < 2:
                raise InputError(
                    path, lineno, f"expected at least 2 columns (word and tag), found {ncols}"
                )
            wcol = _column(word_column, ncols, "word", path, lineno)
            if labelled:
                tcol = _column(tag_column, ncols, "tag", path, lineno)
                if tcol == wcol:
                    raise InputError(path, lineno, f"word and tag are both column {wcol}")
        word = fields[wcol]
        problem = token_problem(word, len(tokens), start, max_tokens, max_token_chars)
        if problem:
            raise InputError(path, lineno, problem)
        if not tokens:
            start = lineno
            doc_id = max(doc_id, 0)
        tokens.append(word)
        if labelled:
            tag = fields[tcol]
            if tag not in known_tags:
                _check_tag(tag, path, lineno)
                known_tags.add(tag)
            tags.append(tag)
    if tokens:
        yield sentence()
    elif not found:
        raise InputError(path, None, "no sentences found")


def decode_bytes(data: bytes, path: str | os.PathLike[str] = "<input>") -> str:
    """Decode a file's bytes as UTF-8, naming the line of the first bad byte on failure."""
    name = os.fspath(path)
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputError(name, 1, "UTF-16 text: save the file as UTF-8")
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    bad = _CONTROL.search(data, skip)
    if bad:
        offset = bad.start()
        line = data.count(b"\n", 0, offset) + 1
        raise InputError(name, line, f"binary data: byte 0x{data[offset]:02x} at offset {offset}")
    try:
        return data[skip:].decode("utf-8")
    except UnicodeDecodeError as e:
        offset = skip + e.start
        line = data.count(b"\n", 0, offset) + 1
        raise InputError(
            name, line, f"not UTF-8 text: byte 0x{data[offset]:02x} at offset {offset}"
        ) from None


def read_text(path: str | os.PathLike[str]) -> str:
    """Read a user's text file, turning OS errors into InputError messages."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(path, None, "no such file") from None
    except IsADirectoryError:
        raise InputError(path, None, "is a directory") from None
    except OSError as e:
        raise InputError(path, None, f"cannot read: {e.strerror or e}") from None
    return decode_bytes(data, path)


def read_conll(
    path: str | os.PathLike[str],
    *,
    word_column: int = 0,
    tag_column: int = -1,
    labelled: bool = True,
    max_tokens: int | None = MAX_TOKENS,
    max_token_chars: int | None = MAX_TOKEN_CHARS,
) -> list[Sentence]:
    """Read a whole column file; see parse_conll for the format and the errors."""
    # Splitting on "\n" only keeps line numbers equal to those an editor shows.
    lines = read_text(path).split("\n")
    return list(
        parse_conll(
            lines,
            os.fspath(path),
            word_column=word_column,
            tag_column=tag_column,
            labelled=labelled,
            max_tokens=max_tokens,
            max_token_chars=max_token_chars,
        )
    )


def _docstart_line(ncols: int) -> str:
    """A -DOCSTART- line with as many columns as the token lines, as in CoNLL-2003."""
    if ncols == 1:
        return DOCSTART
    return " ".join([DOCSTART] + ["-X-"] * (ncols - 2) + ["O"])


def format_conll(
    sentences: Sequence[Sentence], predictions: Sequence[Sequence[str]] | None = None
) -> Iterator[str]:
    """Yield the lines (with newlines) of a column file: `word [gold] [predicted]`.

    With gold tags and predictions this is the input conlleval expects. -DOCSTART- lines are
    written only when the sentences span several documents, so read_conll gives them back.
    """
    if predictions is not None and len(predictions) != len(sentences):
        raise ValueError(f"{len(sentences)} sentences but {len(predictions)} predictions")
    labelled = {s.tags is not None for s in sentences}
    if len(labelled) > 1:
        raise ValueError("cannot mix labelled and unlabelled sentences in one file")
    ncols = 1 + (True in labelled) + (predictions is not None)
    with_docs = len({s.doc_id for s in sentences}) > 1
    doc_id = None
    for i, sent in enumerate(sentences):
        columns: list[Sequence[str]] = [sent.tokens]
        if sent.tags is not None:
            columns.append(sent.tags)
        if predictions is not None:
            if len(predictions[i]) != len(sent):
                raise ValueError(
                    f"sentence {i} has {len(sent)} tokens but {len(predictions[i])} predictions"
                )
            columns.append(predictions[i])
        if with_docs and sent.doc_id != doc_id:
            doc_id = sent.doc_id
            yield _docstart_line(ncols) + "\n\n"
        for fields in zip(*columns, strict=True):
            for field in fields:
                if not field or field == DOCSTART or _UNWRITABLE.search(field):
                    raise ValueError(f"sentence {i}: cannot write field {field!r} to a column file")
            yield " ".join(fields) + "\n"
        yield "\n"


def write_conll(
    path: str | os.PathLike[str],
    sentences: Sequence[Sentence],
    predictions: Sequence[Sequence[str]] | None = None,
) -> None:
    """Write sentences (and optionally predicted tags) atomically; see format_conll."""
    with atomic_open(path, "w") as f:
        f.writelines(format_conll(sentences, predictions))


def check_tags(
    sentences: Sequence[Sentence],
    path: str | os.PathLike[str],
    scheme: str | None = None,
    types: Iterable[str] | None = None,
) -> str:
    """Check a labelled file's tags against its own scheme (detected when not given) and,
    with `types`, against the entity types a model knows. Returns the scheme.

    A model cannot predict a type it never saw, and a tag that breaks the scheme has no
    single reading as spans: both are input errors, reported at their line.
    """
    from . import tags as tagging

    labelled = [(s, s.tags) for s in sentences if s.tags is not None]
    scheme = scheme or tagging.detect_scheme(labels for _, labels in labelled)
    known = set(types) if types is not None else None
    for s, labels in labelled:
        bad = tagging.validate(labels, scheme)
        if bad is not None:
            raise InputError(path, s.line + bad, f"tag {labels[bad]!r} breaks the {scheme} scheme")
        if known is not None:
            for i, tag in enumerate(labels):
                kind = tagging.split_tag(tag)[1]
                if kind is not None and kind not in known:
                    raise InputError(
                        path,
                        s.line + i,
                        f"entity type {kind!r} (tag {tag!r}) does not occur in the training "
                        f"data (known types: {', '.join(sorted(known))})",
                    )
    return scheme
