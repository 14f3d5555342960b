"""What every architecture outputs, with random weights: a CRF never decodes a transition its
tag scheme forbids, and a softmax head decodes each token's best tag.

Random weights scaled up make unconstrained decoding break the scheme on most sentences,
so a CRF whose constraints were lost would be caught at once.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import tiny_sections

from rnner import batching, tags
from rnner.config import Config
from rnner.model import RNNTagger
from rnner.vocab import build_vocabs

TYPES = ["PER", "LOC", "ORG", "MISC"]
# Every tag of each scheme for four types, so all its constraints are in play.
SCHEME_TAGS = {
    "BIOES": ["O"] + [f"{p}-{t}" for t in TYPES for p in "BIES"],
    "IOB2": ["O"] + [f"{p}-{t}" for t in TYPES for p in "BI"],
    "IOE2": ["O"] + [f"{p}-{t}" for t in TYPES for p in "IE"],
}
WORDS = [
    "EU",
    "rejects",
    "German",
    "call",
    "Peter",
    "Blackburn",
    "Brussels",
    "1996-08-22",
    ".",
    "to",
    "boycott",
    "British",
    "lamb",
]


def _sentences(count: int, seed: int) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    return [
        [WORDS[i] for i in rng.integers(len(WORDS), size=int(rng.integers(1, 15)))]
        for _ in range(count)
    ]


def _model(
    cell: str, char_encoder: str, output: str, scheme: str, sents: list[list[str]]
) -> tuple[RNNTagger, list[str], batching.Batch]:
    names = SCHEME_TAGS[scheme]
    # One sentence per tag name, so the vocabulary holds every tag of the scheme.
    vocabs = build_vocabs(
        [*sents, [WORDS[0]] * len(names)], [*[["O"] * len(s) for s in sents], names]
    )
    itos = vocabs.tags.itos
    assert sorted(itos) == sorted(names)
    cfg = Config.from_dict(
        tiny_sections(
            model={
                "cell": cell,
                "char_encoder": char_encoder,
                "output": output,
                "layers": 2,
                "hidden_size": 8,
                "char_hidden": 6,
                "casing_dim": 3,
            }
        )
    )
    model = RNNTagger(
        cfg.model,
        len(vocabs.words),
        len(vocabs.chars),
        len(itos),
        16,
        tags.constraints(itos, scheme),
    )
    with torch.no_grad():  # large random scores: what the scheme forbids often scores best
        model.proj.weight.mul_(40)
        if model.crf is not None:
            for p in (model.crf.transitions, model.crf.start, model.crf.end):
                p.normal_(0, 5)
    model.eval()
    batch = batching.make_batch(batching.encode(sents, vocabs), np.arange(len(sents)))
    return model, itos, batch


def _broken(ids: torch.Tensor, batch: batching.Batch, itos: list[str], scheme: str) -> int:
    """How many sentences' decoded tags break the scheme."""
    rows = [
        [itos[i] for i in row[:n]]
        for row, n in zip(ids.tolist(), batch.lengths.tolist(), strict=True)
    ]
    return sum(tags.validate(r, scheme) is not None for r in rows)


@pytest.mark.parametrize("scheme", list(SCHEME_TAGS))
@pytest.mark.parametrize("char_encoder", ["none", "cnn", "lstm"])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_crf_never_decodes_what_the_scheme_forbids(cell, char_encoder, scheme):
    torch.manual_seed(0)
    sents = _sentences(200, seed=1)
    model, itos, batch = _model(cell, char_encoder, "crf", scheme, sents)
    decoded = model.decode(batch)
    assert decoded.shape == (200, max(map(len, sents)))
    assert _broken(decoded, batch, itos, scheme) == 0
    # The same network with the scheme's masks lifted breaks it in some sentences: the
    # constraints, not luck, keep the CRF's output well formed.
    assert model.crf is not None
    for mask in (model.crf.trans_mask, model.crf.start_mask, model.crf.end_mask):
        mask.zero_()
    assert _broken(model.decode(batch), batch, itos, scheme) > 10


@pytest.mark.parametrize("char_encoder", ["none", "cnn", "lstm"])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_softmax_decodes_each_tokens_best_tag(cell, char_encoder):
    torch.manual_seed(0)
    sents = _sentences(50, seed=2)
    model, _, batch = _model(cell, char_encoder, "softmax", "BIOES", sents)
    with torch.no_grad():
        best = model.emissions(batch).argmax(2)
        decoded = model.decode(batch)
    assert torch.equal(decoded[batch.mask], best[batch.mask])
