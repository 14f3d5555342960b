"""The older home of training, kept while callers move: the names now live in
`rnner.training` (fit and its parts), `rnner.pipeline` (corpus, encoding) and `rnner.runs`.

Nothing inside the package but `tune` imports this module; it goes once `tune/` is rebuilt.
"""

from .pipeline import (
    Corpus,
    Split,
    decode_tags,
    encode_split,
    evaluate_split,
    load_corpus,
    predict_ids,
    read_trust,
    to_scheme,
)
from .training import (
    Hook,
    Interrupted,
    Progress,
    WeightAverage,
    build_model,
    fit,
    make_optimizer,
    make_schedule,
    param_groups,
    pick_device,
    pretrained_matrix,
    set_seed,
)

__all__ = [
    "Corpus", "Hook", "Interrupted", "Progress", "Split", "WeightAverage", "build_model",
    "decode_tags", "encode_split", "evaluate_split", "fit", "load_corpus", "make_optimizer",
    "make_schedule", "param_groups", "pick_device", "predict_ids", "pretrained_matrix",
    "read_trust", "set_seed", "to_scheme",
]
