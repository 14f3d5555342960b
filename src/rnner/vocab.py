"""Vocabularies for words, characters and tags, saved as JSON beside each model."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .lexicon import Lexicon

PAD = "<pad>"
UNK = "<unk>"
_DIGITS = re.compile(r"\d")


def zero_digits(text: str) -> str:
    """Every digit as 0, so numbers of one shape share a vocabulary entry or a vector."""
    return _DIGITS.sub("0", text)


def word_key(token: str, lowercase: bool) -> str:
    """The word vocabulary's key for a token: digits become 0 so numbers share entries."""
    key = zero_digits(token)
    return key.lower() if lowercase else key


class Vocab:
    """A bijection between strings and ids; ids 0 and 1 are PAD and UNK when present."""

    def __init__(self, items: Iterable[str], specials: Sequence[str] = (PAD, UNK)):
        self.specials = tuple(specials)
        self.itos: list[str] = list(self.specials)
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(self.itos)}
        for item in items:
            if item not in self.stoi:
                self.stoi[item] = len(self.itos)
                self.itos.append(item)
        self.unk_id = self.stoi.get(UNK)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, item: str) -> bool:
        return item in self.stoi

    def id(self, item: str) -> int:
        i = self.stoi.get(item, self.unk_id)
        if i is None:
            raise KeyError(item)
        return i

    def to_dict(self) -> dict:
        return {"specials": list(self.specials), "items": self.itos[len(self.specials) :]}

    @classmethod
    def from_dict(cls, d: dict) -> Vocab:
        return cls(d["items"], specials=d["specials"])


@dataclass
class Vocabs:
    words: Vocab
    chars: Vocab
    tags: Vocab  # no specials: tag id i is output column i
    lowercase: bool = True
    # model.lexicon's phrases: saved beside vocab.json (lexicon.FILE), not in it
    lexicon: Lexicon | None = None

    def word_id(self, token: str) -> int:
        return self.words.id(word_key(token, self.lowercase))

    def to_dict(self) -> dict:
        return {
            "lowercase": self.lowercase,
            "words": self.words.to_dict(),
            "chars": self.chars.to_dict(),
            "tags": self.tags.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Vocabs:
        return cls(
            words=Vocab.from_dict(d["words"]),
            chars=Vocab.from_dict(d["chars"]),
            tags=Vocab.from_dict(d["tags"]),
            lowercase=d["lowercase"],
        )


def build_vocabs(
    train_tokens: Iterable[Sequence[str]],
    train_tags: Iterable[Sequence[str]],
    *,
    lowercase: bool = True,
    min_freq: int = 1,
    extra_words: Iterable[str] = (),
) -> Vocabs:
    """Words of the training set seen `min_freq` times, plus `extra_words` (typically the
    dev/test words the pretrained vectors know: Lample et al.'s trick, which gives them their
    pretrained vector instead of UNK without using any label)."""
    counts: Counter[str] = Counter()
    chars: Counter[str] = Counter()
    for tokens in train_tokens:
        for t in tokens:
            counts[word_key(t, lowercase)] += 1
            chars.update(t)
    words = [w for w, c in sorted(counts.items(), key=lambda x: (-x[1], x[0])) if c >= min_freq]
    seen = set(words)
    words += sorted({word_key(w, lowercase) for w in extra_words} - seen)
    tag_set = sorted({t for tags in train_tags for t in tags}, key=_tag_order)
    return Vocabs(
        words=Vocab(words),
        chars=Vocab(sorted(chars)),
        tags=Vocab(tag_set, specials=()),
        lowercase=lowercase,
    )


def _tag_order(tag: str) -> tuple[str, int]:
    """O first, then grouped by type (B, I, E, S within one): tables read better."""
    if tag == "O":
        return ("", -1)
    prefix, _, kind = tag.partition("-")
    return (kind, "BIES".find(prefix[:1]))
