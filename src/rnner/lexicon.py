"""Lexicon match features (Chiu & Nichols 2016): which tokens of a sentence begin, continue,
end or are a whole phrase of a list of place names, nationalities, ...

A lexicon is a JSON Lines file: a header object on line 1 (`format`, `version`, the types in
order and the sources they came from, with versions and licences), then one `[TYPE, PHRASE]`
array a line, PHRASE's tokens joined by single spaces, entries sorted. One entry a line, so a
bad entry is reported as `path:line`. `rnner lexicon build` (`rnner.gazetteers`) writes one
from packaged lists; a trained model keeps its own copy (`lexicon.jsonl` in its run
directory), so it never depends on the file it was trained from.

Matching, per type on its own: from left to right, the longest phrase that starts at the
current token is taken and the scan goes on after it; tokens in no phrase get no match. A
partial match (the first tokens of a longer phrase only) counts for nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

FORMAT = "rnner-lexicon"
VERSION = 1
FILE = "lexicon.jsonl"  # a run directory's own copy
# Match codes, one per token and type; 0 is no match (and padding).
NONE, BEGIN, INSIDE, END, SINGLE = range(5)
CODES = 5


class Lexicon:
    """Types -> phrases (token tuples), and the greedy longest match over a sentence."""

    def __init__(
        self,
        phrases: Mapping[str, Iterable[Sequence[str]]],
        sources: Sequence[Mapping[str, Any]] = (),
        lowercase: bool = False,
    ):
        self.types = list(phrases)
        self.phrases = {t: sorted({tuple(p) for p in ps}) for t, ps in phrases.items()}
        self.sources = [dict(s) for s in sources]
        self.lowercase = lowercase
        # Per type: every phrase (in matching case), and for each first token the lengths of
        # the phrases that start with it, longest first.
        self._sets: list[set[tuple[str, ...]]] = []
        self._starts: list[dict[str, tuple[int, ...]]] = []
        for t in self.types:
            keys = {tuple(self._key(w) for w in p) for p in self.phrases[t]}
            starts: dict[str, set[int]] = {}
            for p in keys:
                starts.setdefault(p[0], set()).add(len(p))
            self._sets.append(keys)
            self._starts.append({w: tuple(sorted(n, reverse=True)) for w, n in starts.items()})

    def _key(self, token: str) -> str:
        return token.lower() if self.lowercase else token

    def __len__(self) -> int:
        return sum(len(p) for p in self.phrases.values())

    def match(self, tokens: Sequence[str]) -> np.ndarray:
        """Match codes [len(tokens), types] (int64): BEGIN/INSIDE/END over a phrase of two or
        more tokens, SINGLE for a one-token phrase, NONE elsewhere."""
        n = len(tokens)
        out = np.zeros((n, len(self.types)), dtype=np.int64)
        keys = [self._key(t) for t in tokens]
        for j, (phrases, starts) in enumerate(zip(self._sets, self._starts, strict=True)):
            i = 0
            while i < n:
                size = 0
                for length in starts.get(keys[i], ()):
                    if length <= n - i and (length == 1 or tuple(keys[i : i + length]) in phrases):
                        size = length
                        break
                if size == 1:
                    out[i, j] = SINGLE
                elif size:
                    out[i, j] = BEGIN
                    out[i + 1 : i + size - 1, j] = INSIDE
                    out[i + size - 1, j] = END
                i += size or 1
        return out

    def header(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "types": self.types, "sources": self.sources}

    def to_text(self) -> str:
        """The file: header, then `[TYPE, PHRASE]` lines sorted by type and phrase."""
        lines = [json.dumps(self.header(), ensure_ascii=False, sort_keys=True)]
        for t in self.types:
            lines += [json.dumps([t, " ".join(p)], ensure_ascii=False) for p in self.phrases[t]]
        return "\n".join(lines) + "\n"

    @classmethod
    def load(cls, path: str | os.PathLike[str], lowercase: bool = False) -> Lexicon:
        """Read a lexicon file; anything wrong in it is an `InputError` at `path:line`."""
        try:
            text = Path(path).read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(path, None, f"not UTF-8 text ({e.reason})") from None
        lines = text.split("\n")
        header = _header(path, lines[0])
        phrases: dict[str, list[tuple[str, ...]]] = {t: [] for t in header["types"]}
        for n, line in enumerate(lines[1:], 2):
            if not line.strip():
                continue
            kind, phrase = _entry(path, n, line)
            if kind not in phrases:
                raise InputError(
                    path, n, f"type {kind!r} is not one of the header's: {', '.join(phrases)}"
                )
            phrases[kind].append(tuple(phrase.split(" ")))
        return cls(phrases, header["sources"], lowercase)


def _header(path: str | os.PathLike[str], line: str) -> dict[str, Any]:
    try:
        head = json.loads(line)
    except json.JSONDecodeError:
        head = None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise InputError(
            path, 1, f"not a lexicon file: line 1 must be a JSON object with format {FORMAT!r}"
        )
    if head.get("version") != VERSION:
        raise InputError(path, 1, f"lexicon version {head.get('version')!r} (this reads {VERSION})")
    types = head.get("types")
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        raise InputError(path, 1, "the header's types must be a non-empty list of strings")
    if len(set(types)) != len(types):
        raise InputError(path, 1, "the header names a type twice")
    if not isinstance(head.get("sources", []), list):
        raise InputError(path, 1, "the header's sources must be a list")
    return {"types": types, "sources": head.get("sources", [])}


def _entry(path: str | os.PathLike[str], n: int, line: str) -> tuple[str, str]:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as e:
        raise InputError(path, n, f"not JSON ({e.msg})") from None
    if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, str) for x in item)):
        raise InputError(path, n, f'expected ["TYPE", "PHRASE"], found {line.strip()[:60]}')
    kind, phrase = item
    if not phrase or phrase != " ".join(phrase.split()):
        raise InputError(path, n, f"phrase {phrase!r}: tokens must be joined by single spaces")
    return kind, phrase
