"""Training a model: `fit(cfg, output)` fills a run directory (see `rnner.runs`).

`setup` builds what a run works on (model, optimizer, schedule), `loop` yields one record
per epoch, `state` holds what survives an interruption, and `trainer.fit` consumes the
records (log, checkpoints, early stopping, final scores).
"""

from .loop import Epoch, train_while_improving
from .setup import (
    Setup,
    build_model,
    make_optimizer,
    make_schedule,
    param_groups,
    pick_device,
    prepare,
    pretrained_matrix,
    set_seed,
)
from .state import Interrupted, Progress, WeightAverage
from .trainer import Hook, final_scores, fit

__all__ = [
    "Epoch",
    "Hook",
    "Interrupted",
    "Progress",
    "Setup",
    "WeightAverage",
    "build_model",
    "final_scores",
    "fit",
    "make_optimizer",
    "make_schedule",
    "param_groups",
    "pick_device",
    "prepare",
    "pretrained_matrix",
    "set_seed",
    "train_while_improving",
]
