"""Tag schemes for chunk labelling: parsing, decoding to spans, conversion, validation.

Supported schemes (Tjong Kim Sang & Veenstra 1999, plus BIOES):

- IOB1: chunks are I-X; B-X only marks a chunk that directly follows another X chunk.
- IOB2 (alias BIO): every chunk starts with B-X, continues with I-X.
- BIOES (alias IOBES): B-X I-X* E-X for multi-token chunks, S-X for single tokens.
- IOE1: chunks are I-X; E-X only ends a chunk that is directly followed by another X chunk.
- IOE2: every chunk ends with E-X, earlier tokens are I-X.

All five decode with one lenient rule (see `spans`), so decoding never depends on knowing the
scheme; the scheme matters only when writing tags (`convert`, `from_spans`) and when checking
them (`validate`, `allowed_transitions`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

Span = tuple[str, int, int]  # (type, start, end exclusive)
ParsedTag = tuple[str, str | None]

SCHEMES: tuple[str, ...] = ("IOB1", "IOB2", "BIOES", "IOE1", "IOE2")
PREFIXES: tuple[str, ...] = ("B", "I", "E", "S")

_ALIASES = {"BIO": "IOB2", "IOBES": "BIOES"}
_SCHEME_PREFIXES = {
    "IOB1": frozenset("OBI"),
    "IOB2": frozenset("OBI"),
    "BIOES": frozenset("OBIES"),
    "IOE1": frozenset("OIE"),
    "IOE2": frozenset("OIE"),
}
_OUTSIDE: ParsedTag = ("O", None)


def normalize_scheme(scheme: str) -> str:
    """Canonical scheme name (case-insensitive, aliases BIO/IOBES), so configs can be lax."""
    name = scheme.upper()
    name = _ALIASES.get(name, name)
    if name not in _SCHEME_PREFIXES:
        known = ", ".join(SCHEMES)
        raise ValueError(f"unknown tag scheme {scheme!r}; expected one of {known} (or BIO, IOBES)")
    return name


def split_tag(tag: str) -> tuple[str, str | None]:
    """Split 'B-PER' into ('B', 'PER'); 'O' gives ('O', None).

    Only the first '-' separates, so entity types may contain '-'. Anything else (no type,
    empty type, unknown prefix) raises ValueError: silently accepting it would corrupt scores.
    """
    if tag == "O":
        return _OUTSIDE
    prefix, sep, label = tag.partition("-")
    if not sep or not label:
        raise ValueError(f"malformed tag {tag!r}: expected 'O' or PREFIX-TYPE such as 'B-PER'")
    if prefix not in PREFIXES:
        raise ValueError(
            f"unknown prefix {prefix!r} in tag {tag!r}: expected one of B, I, E, S (or bare 'O')"
        )
    return prefix, label


def spans(tags: Sequence[str], scheme: str) -> list[Span]:
    """Decode one sentence into (type, start, end) chunks, leniently.

    One rule serves every scheme: B-X and S-X always start a chunk; I-X and E-X continue an
    open X chunk and otherwise start one; E-X and S-X close the chunk; O closes it. Well-formed
    input of any scheme decodes exactly; ill-formed input decodes as conlleval would.
    """
    normalize_scheme(scheme)
    result: list[Span] = []
    start: int | None = None
    current = ""
    for i, tag in enumerate(tags):
        prefix, parsed_label = split_tag(tag)
        label = parsed_label or ""
        if prefix == "O":
            if start is not None:
                result.append((current, start, i))
            start = None
            continue
        if not (start is not None and label == current and prefix in ("I", "E")):
            if start is not None:
                result.append((current, start, i))
            start, current = i, label
        if prefix in ("E", "S"):
            result.append((current, start, i + 1))
            start = None
    if start is not None:
        result.append((current, start, len(tags)))
    return result


def _conll_split(tag: str) -> tuple[str, str]:
    """conlleval's split: prefix before the first '-', type after it ('' when there is none)."""
    prefix, sep, label = tag.partition("-")
    return (prefix, label) if sep else (tag, "")


def _chunk_end(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """conlleval's endOfChunk, with the usual BIOES extension (E and S always end a chunk)."""
    return (
        prev_tag in ("E", "S")
        or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
        or (prev_tag not in ("O", ".") and prev_type != type_)
    )


def _chunk_start(prev_tag: str, tag: str, prev_type: str, type_: str) -> bool:
    """conlleval's startOfChunk, with the usual BIOES extension (B and S always start one)."""
    return (
        tag in ("B", "S")
        or (tag in ("I", "E") and prev_tag in ("E", "S", "O"))
        or (tag not in ("O", ".") and prev_type != type_)
    )


def conlleval_chunks(tags: Sequence[str]) -> list[Span]:
    """Chunks of one sentence exactly as conlleval.pl finds them; never raises.

    Uses conlleval's startOfChunk/endOfChunk over the prefixes B, I, E, S, O (the BIOES
    extension also used by seqeval): an I- after O starts a chunk, a type change starts a new
    one, B-/S- always start, E-/S- always end. For B/I/O input this is identical to
    conlleval.pl; the scorer uses it so that scores never depend on the scheme of a file.
    The sentence is treated as surrounded by O, i.e. sentence boundaries end chunks.
    """
    result: list[Span] = []
    start: int | None = None
    start_type = ""
    prev_tag, prev_type = "O", ""
    n = len(tags)
    for i in range(n + 1):
        tag, type_ = _conll_split(tags[i]) if i < n else ("O", "")
        begins = _chunk_start(prev_tag, tag, prev_type, type_)
        if start is not None and (begins or _chunk_end(prev_tag, tag, prev_type, type_)):
            result.append((start_type, start, i))
            start = None
        if begins and i < n:
            start, start_type = i, type_
        prev_tag, prev_type = tag, type_
    return result


def detect_scheme(tag_sequences: Iterable[Sequence[str]]) -> str:
    """Guess the scheme of a corpus from its tags, so files need no scheme declaration.

    Rules, in order:
    - any S- or E- tag: "BIOES" if a B- or S- tag occurs; otherwise (I/E/O only) "IOE1" if some
      chunk ends in I- (an I-X not followed by I-X/E-X), else "IOE2";
    - B/I/O only: "IOB1" if some chunk starts with I- (an I-X not preceded by B-X/I-X) and
      every B-X directly follows an X tag, i.e. B- only separates adjacent same-type chunks
      (this includes data with I- but no B- at all);
    - otherwise "IOB2" (also for all-O input).
    """
    has_b = has_s = has_e = False
    i_starts = b_after_other = i_ends = False
    for seq in tag_sequences:
        if isinstance(seq, str):
            raise TypeError("detect_scheme expects sentences (sequences of tags), not a string")
        parsed = [split_tag(t) for t in seq]
        for i, (prefix, label) in enumerate(parsed):
            prev = parsed[i - 1] if i > 0 else _OUTSIDE
            nxt = parsed[i + 1] if i + 1 < len(parsed) else _OUTSIDE
            if prefix == "B":
                has_b = True
                b_after_other = b_after_other or prev[1] != label
            elif prefix == "S":
                has_s = True
            elif prefix == "E":
                has_e = True
            elif prefix == "I":
                i_starts = i_starts or not (prev[0] in ("B", "I") and prev[1] == label)
                i_ends = i_ends or not (nxt[0] in ("I", "E") and nxt[1] == label)
    if has_s or has_e:
        if has_b or has_s:
            return "BIOES"
        return "IOE1" if i_ends else "IOE2"
    if i_starts and not b_after_other:
        return "IOB1"
    return "IOB2"


def from_spans(chunks: Iterable[Span], length: int, scheme: str) -> list[str]:
    """Write non-overlapping (type, start, end) chunks as `length` tags in `scheme`."""
    scheme = normalize_scheme(scheme)
    ordered = sorted(chunks, key=lambda c: (c[1], c[2]))
    out = ["O"] * length
    starts = {(label, s) for label, s, _ in ordered}
    ends = {(label, e) for label, _, e in ordered}
    last_end = 0
    for label, s, e in ordered:
        if not 0 <= s < e <= length:
            raise ValueError(f"chunk {(label, s, e)} is empty or outside 0..{length}")
        if s < last_end:
            raise ValueError(f"chunk {(label, s, e)} overlaps the chunk before it")
        last_end = e
        out[s:e] = [f"I-{label}"] * (e - s)
        if scheme == "IOB2" or (scheme == "IOB1" and (label, s) in ends):
            out[s] = f"B-{label}"
        elif scheme == "BIOES":
            if e - s == 1:
                out[s] = f"S-{label}"
            else:
                out[s], out[e - 1] = f"B-{label}", f"E-{label}"
        elif scheme == "IOE2" or (scheme == "IOE1" and (label, e) in starts):
            out[e - 1] = f"E-{label}"
    return out


def convert(tags: Sequence[str], to: str, source: str | None = None) -> list[str]:
    """Rewrite one sentence in scheme `to`, going through its spans.

    `source` (detected from `tags` when None) is only checked to be a known scheme: decoding
    is the same for every supported scheme (see `spans`), which is what makes round trips
    between all of them lossless on well-formed input.
    """
    source = detect_scheme([tags]) if source is None else normalize_scheme(source)
    return from_spans(spans(tags, source), len(tags), to)


def _predecessor_ok(scheme: str, prev: ParsedTag, cur: ParsedTag) -> bool:
    """Whether `cur` may follow `prev` as far as `cur`'s own requirements go."""
    prefix, label = cur
    if scheme == "IOB1" and prefix == "B":
        return prev[1] == label
    if (scheme == "IOB2" and prefix == "I") or (scheme == "BIOES" and prefix in ("I", "E")):
        return prev[0] in ("B", "I") and prev[1] == label
    return True


def _successor_ok(scheme: str, cur: ParsedTag, nxt: ParsedTag) -> bool:
    """Whether `nxt` may follow `cur` as far as `cur`'s requirements on its successor go."""
    prefix, label = cur
    needs_continuation = (
        (scheme == "BIOES" and prefix in ("B", "I"))
        or (scheme == "IOE2" and prefix == "I")
        or (scheme == "IOE1" and prefix == "E")
    )
    return not needs_continuation or (nxt[0] in ("I", "E") and nxt[1] == label)


def _parse_for(scheme: str, tag: str) -> ParsedTag:
    """split_tag, also rejecting prefixes the scheme does not use (S- in IOB2, say)."""
    parsed = split_tag(tag)
    if parsed[0] not in _SCHEME_PREFIXES[scheme]:
        raise ValueError(f"tag {tag!r} is not used by the {scheme} scheme")
    return parsed


def validate(tags: Sequence[str], scheme: str) -> int | None:
    """Index of the first tag that breaks `scheme`, or None when the sentence is well formed.

    A tag is at fault when it is malformed or foreign to the scheme, when it lacks the
    predecessor it needs (I-X in IOB2 without B-X/I-X before it; I-X/E-X in BIOES; B-X in IOB1
    not after an X tag), or when it lacks the successor it needs (B-X/I-X in BIOES, I-X in IOE2,
    E-X in IOE1 not followed by I-X/E-X). A malformed successor is reported itself instead.
    """
    scheme = normalize_scheme(scheme)
    prev = _OUTSIDE
    for i, tag in enumerate(tags):
        try:
            cur = _parse_for(scheme, tag)
        except ValueError:
            return i
        if not _successor_ok(scheme, prev, cur):
            return i - 1
        if not _predecessor_ok(scheme, prev, cur):
            return i
        prev = cur
    if not _successor_ok(scheme, prev, _OUTSIDE):
        return len(tags) - 1
    return None


def allowed_transitions(tag_names: Sequence[str], scheme: str) -> list[tuple[int, int]]:
    """Index pairs (i, j) such that tag j may directly follow tag i in `scheme`.

    Meant for CRF decode constraints; a tag sequence passes `validate` exactly when its first
    tag is in `allowed_start`, its last in `allowed_end`, and every adjacent pair is listed here.
    IOB1 allows everything conlleval parses (I-X after O) but B-X only after an X tag.
    """
    scheme = normalize_scheme(scheme)
    parsed = [_parse_for(scheme, t) for t in tag_names]
    return [
        (i, j)
        for i, a in enumerate(parsed)
        for j, b in enumerate(parsed)
        if _successor_ok(scheme, a, b) and _predecessor_ok(scheme, a, b)
    ]


def allowed_start(tag_names: Sequence[str], scheme: str) -> list[int]:
    """Indices of tags that may begin a sentence in `scheme` (see `allowed_transitions`)."""
    scheme = normalize_scheme(scheme)
    parsed = [_parse_for(scheme, t) for t in tag_names]
    return [j for j, b in enumerate(parsed) if _predecessor_ok(scheme, _OUTSIDE, b)]


def allowed_end(tag_names: Sequence[str], scheme: str) -> list[int]:
    """Indices of tags that may end a sentence in `scheme` (see `allowed_transitions`)."""
    scheme = normalize_scheme(scheme)
    parsed = [_parse_for(scheme, t) for t in tag_names]
    return [i for i, a in enumerate(parsed) if _successor_ok(scheme, a, _OUTSIDE)]


def constraints(
    tag_names: Sequence[str], scheme: str
) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Allowed transitions, first tags and last tags: what a CRF for `scheme` may output."""
    return (
        allowed_transitions(tag_names, scheme),
        allowed_start(tag_names, scheme),
        allowed_end(tag_names, scheme),
    )
