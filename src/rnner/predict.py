"""Applying a trained model: a CoNLL-like tokenizer and the user-facing `Tagger`
(`Tagger.load(run_dir).predict("Peter Blackburn visited Brussels.")`).

The run-directory format lives in `rnner.runs`, the encoding of sentences in
`rnner.pipeline`; their names are re-exported here for callers of the older layout.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import routing, tags
from .batching import length_buckets, make_batch
from .config import Config
from .conll import Sentence
from .errors import RunDirError
from .model import RNNTagger
from .pipeline import decode_tags, encode_split, predict_ids
from .runs import (
    DEFAULT_MODEL,
    PICKLE_SUFFIXES,
    default_model_path,
    export_run,
    load_run,
    load_weights,
    read_router,
    save_run,
)
from .vocab import Vocabs

__all__ = [
    "DEFAULT_MODEL",
    "PICKLE_SUFFIXES",
    "RunDirError",
    "Span",
    "Tagger",
    "default_model_path",
    "export_run",
    "load_run",
    "load_weights",
    "save_run",
    "split_sentences",
    "tokenize",
]


# --- tokenizer -------------------------------------------------------------------------------

_ABBREVIATIONS = {
    "mr.",
    "mrs.",
    "ms.",
    "dr.",
    "prof.",
    "st.",
    "jr.",
    "sr.",
    "vs.",
    "inc.",
    "corp.",
    "ltd.",
    "co.",
    "no.",
    "jan.",
    "feb.",
    "mar.",
    "apr.",
    "jun.",
    "jul.",
    "aug.",
    "sep.",
    "sept.",
    "oct.",
    "nov.",
    "dec.",
    "gen.",
    "gov.",
    "sen.",
    "rep.",
    "lt.",
    "col.",
    "sgt.",
    "capt.",
    "u.s.",
    "u.k.",
    "u.n.",
    "e.g.",
    "i.e.",
    "etc.",
    "approx.",
    "est.",
    "dept.",
    "mt.",
}
# A token: a number with inner separators, an abbreviation with inner dots, a word with
# inner hyphens/apostrophes, a clitic, or one punctuation character (runs of -, ., etc. kept).
_TOKEN = re.compile(
    r"""
    \d+(?:[.,:/-]\d+)*             # 1,000  3.5  1996-08-22  6-4
    | (?:[A-Za-z]\.){2,}           # U.S.  U.N.
    | [nN]['’][tT]\b                # clitics, split as in the Penn Treebank
    | ['’](?:s|re|ve|ll|d|m|S|RE|VE|LL|D|M)\b
    | [^\W\d_]+(?=[nN]['’][tT]\b)   # do|n't
    | [^\W_](?:[^\W_]|(?:[-&]|['’](?!(?:[sSdDmM]|re|ve|ll|RE|VE|LL)\b))(?=[^\W_]))*
                                   # words, with inner - & and ' (not before a clitic)
    | -{2,} | \.{2,}               # -- and ...
    | \S                           # any other single character
    """,
    re.VERBOSE,
)


def tokenize(text: str) -> list[tuple[str, int, int]]:
    """Tokens with character offsets, split roughly as CoNLL-2003's Reuters text is."""
    out: list[tuple[str, int, int]] = []
    for m in _TOKEN.finditer(text):
        tok, start, end = m.group(), m.start(), m.end()
        # "Mr." and "Inc." keep their dot; other words leave it as a separate token.
        if out and tok == "." and start == out[-1][2]:
            prev = out[-1][0]
            if (prev + ".").lower() in _ABBREVIATIONS or re.fullmatch(r"[A-Z]", prev):
                out[-1] = (prev + ".", out[-1][1], end)
                continue
        out.append((tok, start, end))
    return out


def split_sentences(tokens: list[tuple[str, int, int]]) -> list[list[tuple[str, int, int]]]:
    """Sentences end at . ! ? (not abbreviations) before a token that opens a new sentence."""
    sents: list[list[tuple[str, int, int]]] = []
    cur: list[tuple[str, int, int]] = []
    for i, tok in enumerate(tokens):
        cur.append(tok)
        nxt = tokens[i + 1][0] if i + 1 < len(tokens) else ""
        if tok[0] in {".", "!", "?"} and (not nxt or nxt[:1].isupper() or nxt[:1] in "\"'("):
            sents.append(cur)
            cur = []
    if cur:
        sents.append(cur)
    return sents


# --- the tagger --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    text: str
    label: str
    start: int  # character offsets into the input text (token offsets for pre-tokenised input)
    end: int
    token_start: int
    token_end: int

    def to_dict(self) -> dict[str, Any]:
        # by hand: dataclasses.asdict deep-copies field by field, a cost a server pays per span
        return {
            "text": self.text,
            "label": self.label,
            "start": self.start,
            "end": self.end,
            "token_start": self.token_start,
            "token_end": self.token_end,
        }


class Tagger:
    """A trained model ready to tag text: `Tagger.load("models/conll03-en").predict(text)`."""

    def __init__(
        self, model: RNNTagger, vocabs: Vocabs, cfg: Config, meta: dict, device: str = "cpu"
    ):
        self.model, self.vocabs, self.cfg, self.meta = model, vocabs, cfg, meta
        self.device = torch.device(device)
        self.scheme = cfg.data.scheme
        self.output_scheme = meta.get("source_scheme", "IOB2")

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu") -> Tagger:
        """A run directory's model, or a routed model directory's two (`RoutedTagger`)."""
        d = Path(path) if path is not None else default_model_path()
        router = read_router(d)
        if router is not None:
            return RoutedTagger(
                {name: cls.load(d / name, device) for name in routing.ROUTES}, router
            )
        model, vocabs, cfg, meta = load_run(d, device)
        return cls(model, vocabs, cfg, meta, device)

    def tag(
        self,
        sentences: Sequence[Sequence[str]],
        batch_size: int = 256,
        doc_ids: Sequence[int] | None = None,
    ) -> list[list[str]]:
        """Tags (in the training data's own scheme) for pre-tokenised sentences.

        `doc_ids` say which sentences belong together, for models trained with document
        context; without them all sentences given in one call count as one document.
        """
        keep = [i for i, s in enumerate(sentences) if len(s)]
        result: list[list[str]] = [[] for _ in sentences]
        if not keep:
            return result
        sents = [
            Sentence(tuple(sentences[i]), None, doc_ids[i] if doc_ids is not None else 0)
            for i in keep
        ]
        split = encode_split(sents, self.vocabs, self.cfg)
        # cut where lengths jump: a server's batch mixes short and long texts
        batches = [
            make_batch(split.data, index)
            for index in length_buckets(split.data.lengths, batch_size)
        ]
        with torch.inference_mode():
            ids = predict_ids(self.model, split, batches, self.device)
        for i, row in zip(
            keep, decode_tags(ids, self.vocabs, self.scheme, self.output_scheme), strict=True
        ):
            result[i] = row
        return result

    def predict(self, text: str | Sequence[str]) -> list[Span]:
        """Entity spans of raw text (tokenised here) or of one pre-tokenised sentence."""
        if isinstance(text, str):
            return self.predict_text([text])[0]
        tokens = list(text)
        offsets, pos = [], 0
        for t in tokens:
            offsets.append((pos, pos + len(t)))
            pos += len(t) + 1
        return _spans(" ".join(tokens), [tokens], [offsets], self.tag([tokens]), self.output_scheme)

    def predict_text(self, texts: Iterable[str], batch_size: int = 256) -> list[list[Span]]:
        """Spans for each text, with character offsets into that text."""
        texts = list(texts)
        per_text = [split_sentences(tokenize(t)) for t in texts]
        flat = [[tok for tok, _, _ in s] for sents in per_text for s in sents]
        docs = [d for d, sents in enumerate(per_text) for _ in sents]
        tagged = iter(self.tag(flat, batch_size, docs))
        out = []
        for text, sents in zip(texts, per_text, strict=True):
            toks = [[tok for tok, _, _ in s] for s in sents]
            offs = [[(a, b) for _, a, b in s] for s in sents]
            out.append(_spans(text, toks, offs, [next(tagged) for _ in sents], self.output_scheme))
        return out


class RoutedTagger(Tagger):
    """Two models behind one `Tagger`: each document goes to the cased model when its words
    have case, else to the caseless one (`rnner.routing.route`). Labels, scheme, config and
    provenance (`cfg`, `vocabs`, `meta`) are the cased model's; `meta["router"]` adds the
    routing and both models' provenance, so a resumed `rnner predict` checks both."""

    def __init__(self, taggers: dict[str, Tagger], router: dict[str, Any]):
        first = taggers[routing.CASED]
        super().__init__(first.model, first.vocabs, first.cfg, dict(first.meta), str(first.device))
        self.taggers, self.router = taggers, router
        self.min_share = float(router["min_share"])
        self.max_lower_sentences = float(router["max_lower_sentences"])
        self.min_sentences = int(router["min_sentences"])
        self.meta["router"] = {
            "min_share": self.min_share,
            "max_lower_sentences": self.max_lower_sentences,
            "min_sentences": self.min_sentences,
            "models": {
                name: {"meta": t.meta, "config": t.cfg.to_dict()} for name, t in taggers.items()
            },
        }

    def route(self, sentences: Sequence[Sequence[str]]) -> str:
        """Which model reads a document of these sentences."""
        return routing.route(
            sentences, self.min_share, self.max_lower_sentences, self.min_sentences
        )

    def tag(
        self,
        sentences: Sequence[Sequence[str]],
        batch_size: int = 256,
        doc_ids: Sequence[int] | None = None,
    ) -> list[list[str]]:
        ids = list(doc_ids) if doc_ids is not None else [0] * len(sentences)
        docs: dict[int, list[int]] = {}
        for i, d in enumerate(ids):
            docs.setdefault(d, []).append(i)
        chosen = {d: self.route([sentences[i] for i in rows]) for d, rows in docs.items()}
        result: list[list[str]] = [[] for _ in sentences]
        for name, tagger in self.taggers.items():
            rows = [i for i, d in enumerate(ids) if chosen[d] == name]
            if rows:
                tagged = tagger.tag(
                    [sentences[i] for i in rows], batch_size, [ids[i] for i in rows]
                )
                for i, seq in zip(rows, tagged, strict=True):
                    result[i] = seq
        return result


def _spans(
    text: str,
    sents: list[list[str]],
    offsets: list[list[tuple[int, int]]],
    tag_seqs: list[list[str]],
    scheme: str,
) -> list[Span]:
    out: list[Span] = []
    base = 0
    for toks, offs, ts in zip(sents, offsets, tag_seqs, strict=True):
        for label, i, j in tags.spans(ts, scheme):
            a, b = offs[i][0], offs[j - 1][1]
            out.append(Span(text[a:b], label, a, b, base + i, base + j))
        base += len(toks)
    return out
