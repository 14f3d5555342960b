"""The streaming CoNLL reader and the file reader apply the same limits with the same words:
one copy of them lives in rnner.conll."""

import pytest

from rnner import conll, stream
from rnner.errors import InputError


def _stream_error(lines: list[str]) -> str:
    counts = stream._Counts("in.txt", "fail")
    with pytest.raises(InputError) as info:
        list(stream._sentences(enumerate(lines, 1), counts))
    return str(info.value)


def _file_error(lines: list[str]) -> str:
    with pytest.raises(InputError) as info:
        list(conll.parse_conll(lines, "in.txt", labelled=False))
    return str(info.value)


def test_a_token_over_the_limit_is_refused_alike():
    lines = ["EU", "x" * (conll.MAX_TOKEN_CHARS + 1), ""]
    assert (
        _stream_error(lines)
        == _file_error(lines)
        == (
            f"in.txt:2: token of {conll.MAX_TOKEN_CHARS + 1} characters exceeds the limit of "
            f"{conll.MAX_TOKEN_CHARS}"
        )
    )


def test_a_token_at_the_limit_is_read_by_both():
    lines = ["x" * conll.MAX_TOKEN_CHARS, ""]
    counts = stream._Counts("in.txt", "fail")
    assert [s.tokens for s in stream._sentences(enumerate(lines, 1), counts)] == [
        s.tokens for s in conll.parse_conll(lines, "in.txt", labelled=False)
    ]


def test_a_sentence_over_the_limit_is_refused_alike():
    lines = ["w"] * (conll.MAX_TOKENS + 1) + [""]
    assert (
        _stream_error(lines)
        == _file_error(lines)
        == (
            f"in.txt:{conll.MAX_TOKENS + 1}: sentence starting at line 1 exceeds "
            f"{conll.MAX_TOKENS} tokens"
        )
    )
