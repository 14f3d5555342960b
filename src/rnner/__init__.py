"""rnner: recurrent networks (BiLSTM-CNN-CRF family) for named entity recognition."""

from typing import Any

__version__ = "0.1.0"
__all__ = ["Span", "Tagger", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy, so that `import rnner.tags` stays light and free of torch.
    if name in ("Span", "Tagger"):
        from . import predict

        return getattr(predict, name)
    raise AttributeError(name)
