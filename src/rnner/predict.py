"""Applying a trained model: the run-directory format, a CoNLL-like tokenizer, and the
user-facing `Tagger` (`Tagger.load(run_dir).predict("Peter Blackburn visited Brussels.")`)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from . import batching, files, tags
from .config import Config
from .errors import RunDirError
from .model import RNNTagger
from .train import Split, predict_ids
from .vocab import Vocabs

PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")
DEFAULT_MODEL = "models/conll03-en"


# --- run directory ---------------------------------------------------------------------------


def save_run(
    out: Path,
    model: RNNTagger,
    vocabs: Vocabs,
    cfg: Config,
    meta: dict[str, Any] | None,
    half: bool = False,
) -> None:
    """Weights to safetensors; with `meta`, also config, vocabularies and provenance (JSON)."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    files.write_bytes(out / "model.safetensors", save_safetensors(state))
    if meta is not None:
        files.write_json(out / "config.json", cfg.to_dict())
        files.write_json(out / "vocab.json", vocabs.to_dict())
        files.write_json(out / "run.json", {"word_dim": model.words.embedding_dim, **meta})


def load_weights(path: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    state = load_safetensors((Path(path) / "model.safetensors").read_bytes())
    return {k: v.float().to(device) if v.is_floating_point() else v.to(device)
            for k, v in state.items()}


def load_run(path: str | Path, device: str = "cpu") -> tuple[RNNTagger, Vocabs, Config, dict]:
    """Load a run directory without unpickling anything."""
    d = Path(path)
    if not d.is_dir():
        raise RunDirError(f"{d}: not a run directory (no such directory)")
    pickles = sorted(p.name for p in d.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise RunDirError(
            f"{d}: refusing to load a run directory holding pickle files ({', '.join(pickles)}):"
            " unpickling can run arbitrary code; rnner models are model.safetensors plus JSON"
        )
    for name in ("model.safetensors", "config.json", "vocab.json", "run.json"):
        if not (d / name).is_file():
            raise RunDirError(f"{d}: not a run directory (missing {name})")
    try:
        cfg = Config.from_dict(_read_json(d / "config.json"))
        vocabs = Vocabs.from_dict(_read_json(d / "vocab.json"))
        meta = _read_json(d / "run.json")
        names = vocabs.tags.itos
        model = RNNTagger(cfg.model, len(vocabs.words), len(vocabs.chars), len(names),
                          meta["word_dim"], tags.constraints(names, cfg.data.scheme))
        model.load_state_dict(load_weights(d))
    except Exception as e:  # bad JSON, config, truncated weights, shape mismatch: all one story
        raise RunDirError(f"{d}: damaged run directory ({type(e).__name__}: {e})") from None
    return model.to(device).eval(), vocabs, cfg, meta


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def export_run(src: str | Path, dst: str | Path, half: bool = True) -> Path:
    """A run directory reduced to what prediction needs (no checkpoint, no logs), with
    float16 weights by default: half the size, and the same predictions to within rounding."""
    model, vocabs, cfg, meta = load_run(src)
    out = Path(dst)
    save_run(out, model, vocabs, cfg, meta, half=half)
    metrics = Path(src) / "metrics.json"
    if metrics.is_file():
        files.write_text(out / "metrics.json", metrics.read_text(encoding="utf-8"))
    return out


# --- tokenizer -------------------------------------------------------------------------------

_ABBREVIATIONS = {
    "mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "jr.", "sr.", "vs.", "inc.", "corp.", "ltd.",
    "co.", "no.", "jan.", "feb.", "mar.", "apr.", "jun.", "jul.", "aug.", "sep.", "sept.",
    "oct.", "nov.", "dec.", "gen.", "gov.", "sen.", "rep.", "lt.", "col.", "sgt.", "capt.",
    "u.s.", "u.k.", "u.n.", "e.g.", "i.e.", "etc.", "approx.", "est.", "dept.", "mt.",
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
        return asdict(self)


class Tagger:
    """A trained model ready to tag text: `Tagger.load("models/conll03-en").predict(text)`."""

    def __init__(self, model: RNNTagger, vocabs: Vocabs, cfg: Config, meta: dict,
                 device: str = "cpu"):
        self.model, self.vocabs, self.cfg, self.meta = model, vocabs, cfg, meta
        self.device = torch.device(device)
        self.scheme = cfg.data.scheme
        self.output_scheme = meta.get("source_scheme", "IOB2")

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu") -> Tagger:
        model, vocabs, cfg, meta = load_run(path or default_model_path(), device)
        return cls(model, vocabs, cfg, meta, device)

    def tag(self, sentences: Sequence[Sequence[str]], batch_size: int = 256,
            doc_ids: Sequence[int] | None = None) -> list[list[str]]:
        """Tags (in the training data's own scheme) for pre-tokenised sentences.

        `doc_ids` say which sentences belong together, for models trained with document
        context; without them all sentences given in one call count as one document.
        """
        keep = [i for i, s in enumerate(sentences) if len(s)]
        result: list[list[str]] = [[] for _ in sentences]
        if not keep:
            return result
        docs = [doc_ids[i] for i in keep] if doc_ids is not None else [0] * len(keep)
        lengths = [len(sentences[i]) for i in keep]
        groups = batching.units(docs, lengths, self.cfg.data.context,
                                self.cfg.data.max_context_tokens)
        data = batching.encode(batching.join_units([sentences[i] for i in keep], groups),
                               self.vocabs)
        split = Split(data, groups, lengths)
        names = self.vocabs.tags.itos
        with torch.inference_mode():
            ids = predict_ids(self.model, split, split.batches(batch_size), self.device)
        for i, row in zip(keep, ids, strict=True):
            result[i] = tags.convert([names[k] for k in row], self.output_scheme, self.scheme)
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
        return _spans(" ".join(tokens), [tokens], [offsets], self.tag([tokens]),
                      self.output_scheme)

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
            out.append(_spans(text, toks, offs, [next(tagged) for _ in sents],
                              self.output_scheme))
        return out


def _spans(text: str, sents: list[list[str]], offsets: list[list[tuple[int, int]]],
           tag_seqs: list[list[str]], scheme: str) -> list[Span]:
    out: list[Span] = []
    base = 0
    for toks, offs, ts in zip(sents, offsets, tag_seqs, strict=True):
        for label, i, j in tags.spans(ts, scheme):
            a, b = offs[i][0], offs[j - 1][1]
            out.append(Span(text[a:b], label, a, b, base + i, base + j))
        base += len(toks)
    return out


def default_model_path() -> Path:
    """The shipped model: beside the package source in a checkout, or RNNER_MODEL."""
    import os

    env = os.environ.get("RNNER_MODEL")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for root in (Path.cwd(), *here.parents):
        candidate = root / DEFAULT_MODEL
        if (candidate / "model.safetensors").is_file():
            return candidate
    raise RunDirError(
        f"no model given and the default model ({DEFAULT_MODEL}) was not found; "
        "pass a run directory or set RNNER_MODEL"
    )

