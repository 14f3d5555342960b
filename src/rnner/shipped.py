"""What rnner ships beside its code, found in a checkout or in an installed wheel.

In a checkout the shipped model and configs live at the repository root (models/, configs/);
a wheel carries the same folders inside the package (setup.py copies them there). Both are
found by one search: the current directory first, then each folder above this file, so the
package folder of an installed wheel is tried too. The model's own path is
`rnner.runs.DEFAULT_MODEL` (found by `rnner.runs.default_model_path` the same way); this
module adds the configs.
"""

from __future__ import annotations

from pathlib import Path

CONFIGS = "configs"


def find(relative: str) -> Path | None:
    """`relative` (e.g. "models/conll03-en") under the current directory, or beside the
    package source (a checkout), or inside the installed package (a wheel)."""
    here = Path(__file__).resolve()
    for root in (Path.cwd(), *here.parents):
        candidate = root / relative
        if candidate.exists():
            return candidate
    return None


def config_path(name: str) -> Path:
    """A config given as a path, or a shipped config by name: `conll03` is
    configs/conll03.toml, `sweeps/smoke` is configs/sweeps/smoke.toml."""
    path = Path(name)
    if path.exists() or path.suffix or path.is_absolute():
        return path
    found = find(f"{CONFIGS}/{name}.toml")
    if found is None:
        from .errors import ConfigError

        folder = find(CONFIGS)
        names = sorted(p.stem for p in folder.glob("*.toml")) if folder else []
        raise ConfigError(
            name,
            "no such file, nor a shipped config of that name"
            + (f" (shipped: {', '.join(names)})" if names else ""),
        )
    return found
