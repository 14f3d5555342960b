"""Resumable training state in one safetensors file, without pickle.

Tensors (model, optimizer moments, torch RNG) are safetensors entries; everything else
(scheduler, counters, numpy/python RNG, the epoch's batch order seed) is JSON in the file's
metadata. One file, written atomically, so a kill at any moment leaves a usable checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import safe_open
from safetensors.torch import save as save_safetensors

from . import files

NAME = "checkpoint.safetensors"


def _flatten(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Replace every tensor in a nested structure by a reference to a safetensors entry."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        return {
            "__dict__": [[_key(k), _flatten(v, f"{prefix}.{k}", tensors)] for k, v in obj.items()]
        }
    if isinstance(obj, list | tuple):
        items = [_flatten(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else {"__tuple__": items}
    return obj


def _key(k: Any) -> Any:
    return k if isinstance(k, str | int) else str(k)


def _unflatten(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {k: _unflatten(v, tensors) for k, v in obj["__dict__"]}
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save(path: Path, state: dict[str, Any]) -> None:
    tensors: dict[str, torch.Tensor] = {}
    meta = _flatten(state, "s", tensors)
    data = save_safetensors(tensors, metadata={"state": json.dumps(meta)})
    files.write_bytes(path / NAME, data)


def load(path: Path) -> dict[str, Any]:
    file = path / NAME
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no {NAME} to resume from")
    data = file.read_bytes()
    tensors = load_safetensors(data)
    with safe_open(str(file), framework="pt") as f:
        meta = json.loads(f.metadata()["state"])
    return _unflatten(meta, tensors)
