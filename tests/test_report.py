"""The report: configurations pooled over seeds, every file it writes renamed into place whole,
and the study-summary page (benchmarks/study_summary.py) built on its helpers."""

import contextlib
import importlib.util
import json
import os
import sys
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution

from rnner import files
from rnner.config import Config
from rnner.report import groups, report
from rnner.tune import config_id, load_sweep, prepare

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


def _made_trial(optimizer, lr, cell, seed, dev, test, momentum=0.0):
    from optuna.distributions import FloatDistribution

    cfg = Config.from_dict(
        {
            "train": {"optimizer": optimizer, "lr": lr, "seed": seed, "momentum": momentum},
            "model": {"cell": cell},
        }
    )
    params = {"train.optimizer": optimizer, f"train.lr@{optimizer}": lr, "model.cell": cell}
    dists = {
        "train.optimizer": CategoricalDistribution(["sgd", "adam"]),
        f"train.lr@{optimizer}": FloatDistribution(1e-4, 1.0, log=True),
        "model.cell": CategoricalDistribution(["gru", "lstm"]),
    }
    if optimizer == "sgd":
        params["train.momentum"] = momentum
        dists["train.momentum"] = CategoricalDistribution([0.0, 0.9])
    curve = [dev / 2, dev]
    run = {
        "seed": seed,
        "dev_f1": dev,
        "test_f1": test,
        "best_epoch": 2,
        "epochs_run": 2,
        "seconds": 10.0 * (1 + lr),
        "dev_curve": curve,
    }
    return optuna.trial.create_trial(
        params=params,
        distributions=dists,
        value=dev,
        user_attrs={
            "config": cfg.to_dict(),
            "config_id": config_id(cfg),
            "runs": [run],
            "seeds": [seed],
            "dev_f1_per_epoch": [curve],
        },
    )


def _made_study(storage=None, name: str = "s") -> optuna.Study:
    study = optuna.create_study(direction="maximize", storage=storage, study_name=name)
    study.set_user_attr(
        "sweep",
        {
            "search": [
                {"name": "train.optimizer", "key": "train.optimizer"},
                {"name": "train.momentum", "key": "train.momentum"},
                {"name": "train.lr@sgd", "key": "train.lr", "log": True},
                {"name": "train.lr@adam", "key": "train.lr", "log": True},
                {"name": "model.cell", "key": "model.cell"},
            ]
        },
    )
    made = [
        ("sgd", 0.1, "lstm", 1, 0.80, 0.70, 0.9),
        ("sgd", 0.1, "lstm", 2, 0.84, 0.60, 0.9),
        ("adam", 0.001, "gru", 1, 0.81, 0.99, 0.0),
        ("sgd", 0.01, "gru", 1, 0.50, 0.40, 0.0),
        ("adam", 0.01, "lstm", 1, 0.70, 0.65, 0.0),
    ]
    for o, lr, cell, seed, dev, test, mom in made:
        study.add_trial(_made_trial(o, lr, cell, seed, dev, test, mom))
    return study


def test_report_pools_seeds_ranks_by_dev_and_plots_what_varies(tmp_path):
    study = _made_study()
    rows = groups(study)
    # Seeds 1 and 2 of the same configuration are one row; the test F1 of 0.99 does not rank.
    assert [(g.trials, len(g.runs)) for g in rows] == [([0, 1], 2), ([2], 1), ([4], 1), ([3], 1)]
    assert rows[0].dev_mean == pytest.approx(0.82)
    assert rows[0].optimizer() == "sgd+momentum" and rows[3].optimizer() == "sgd"
    md = report(study, tmp_path).read_text()
    assert "| 1 | 0 1 | sgd | 0.9 | 0.1 | lstm | 82.00 ± 2.83 | 65.00 ± 7.07 | 2 |" in md
    assert "| 2 | 2 | adam | – | 0.001 | gru | 81.00 | 99.00 | 1 |" in md
    assert "| parameter | importance |" in md
    for name in (
        "learning_curves.png",
        "f1_vs_time.png",
        "lr_by_optimizer.png",
        "optimizers.png",
        "params.png",
    ):
        assert (tmp_path / name).read_bytes().startswith(PNG), name
        assert f"]({name})" in md
    assert not (tmp_path / "batch_size.png").exists()
    assert json.loads((tmp_path / "best_config.json").read_text())["train"]["momentum"] == 0.9
    lines = (tmp_path / "trials.csv").read_bytes().split(b"\r\n")
    assert lines[0].startswith(b"trial,state,config_id,seed,train.optimizer,train.momentum,")
    assert len(lines) == 1 + 5 + 1  # header, one row per seed run, the final line end


# --- atomic writes ----------------------------------------------------------------------------


@pytest.fixture
def renamed(monkeypatch) -> list[Path]:
    """The paths that rnner.files renamed into place while the test ran."""
    done: list[Path] = []
    real = files.atomic_open

    @contextlib.contextmanager
    def spy(path, mode="w"):
        with real(path, mode) as f:
            yield f
        done.append(Path(path))

    monkeypatch.setattr(files, "atomic_open", spy)
    return done


def test_every_file_of_a_report_is_renamed_into_place(tmp_path, renamed):
    report(_made_study(), tmp_path)
    made = sorted(p.name for p in tmp_path.iterdir())
    assert {"report.md", "trials.csv", "best_config.json", "learning_curves.png"} <= set(made)
    assert sorted(p.name for p in renamed) == made


def test_the_owner_file_of_a_sweep_output_is_renamed_into_place(tmp_path, renamed):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text('[search."train.lr"]\nchoices = [0.1, 0.2]\n', encoding="utf-8")
    out = tmp_path / "out"
    prepare(load_sweep(sweep), f"sqlite:///{out / 'study.db'}", "mine", out)
    assert renamed == [out / "trials" / ".study"]
    assert (out / "trials" / ".study").read_text() == "mine\n"


def test_a_plot_that_fails_midway_leaves_the_old_file_whole(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    study = _made_study()
    report(study, tmp_path)
    old = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def torn(self, fname, **kw):  # half a PNG, then the disk fills up
        if isinstance(fname, str | os.PathLike):
            with open(fname, "wb") as f:  # what a direct savefig would do
                f.write(PNG)
        else:
            fname.write(PNG)
        raise OSError("No space left on device")

    monkeypatch.setattr(Figure, "savefig", torn)
    with pytest.raises(OSError, match="No space left"):
        report(study, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == old  # no temp file either


# --- benchmarks/study_summary.py --------------------------------------------------------------


def _cell_study(directory: Path, name: str, devs: dict[str, list[float]]) -> None:
    """A sweep over model.cell: each cell trained with seeds 1, 2, ... (dev F1 as given)."""
    directory.mkdir(parents=True)
    study = optuna.create_study(
        direction="maximize", study_name=name, storage=f"sqlite:///{directory / 'study.db'}"
    )
    study.set_user_attr(
        "sweep",
        {
            "search": [{"name": "model.cell", "key": "model.cell", "choices": sorted(devs)}],
            "seeds": [1, 2],
        },
    )
    for cell, values in devs.items():
        for seed, dev in enumerate(values, 1):
            cfg = Config.from_dict({"model": {"cell": cell}, "train": {"seed": seed}})
            run = {
                "seed": seed,
                "dev_f1": dev,
                "test_f1": dev - 0.1,
                "best_epoch": 2,
                "epochs_run": 2,
                "seconds": 30.0,
                "dev_curve": [dev / 2, dev],
            }
            study.add_trial(
                optuna.trial.create_trial(
                    params={"model.cell": cell},
                    distributions={"model.cell": CategoricalDistribution(sorted(devs))},
                    value=dev,
                    user_attrs={
                        "config": cfg.to_dict(),
                        "config_id": config_id(cfg),
                        "runs": [run],
                        "seeds": [seed],
                    },
                )
            )


def test_study_summary_writes_its_page_from_a_tiny_study(tmp_path, capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location(
        "study_summary", ROOT / "benchmarks" / "study_summary.py"
    )
    summary = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "study_summary", summary)  # its dataclasses look it up
    spec.loader.exec_module(summary)
    runs = tmp_path / "runs"
    _cell_study(runs / "00_default", "00_default", {"lstm": [0.80, 0.84]})
    _cell_study(runs / "06_cell", "06_cell", {"gru": [0.70, 0.74], "lstm": [0.80, 0.84]})
    page = tmp_path / "docs" / "hp.md"
    assert summary.main(["--runs", str(runs), "--output", str(page)]) == 0
    assert capsys.readouterr().out == f"wrote {page}\n"
    md = page.read_text(encoding="utf-8")
    assert "## Factors" in md and "### Recurrent cell" in md
    assert (
        "| **lstm (default)** | 82.00 ± 2.83 | 72.00 ± 2.83 | ref. |  | ref. |  | 2 | 2.0 | 30 |"
    ) in md
    # Welch's t on (0.70, 0.74) against (0.80, 0.84): t = 3.54 with 2 degrees of freedom
    p = "0.072" if importlib.util.find_spec("scipy") is not None else "> 2σ *"
    assert f"| gru | 72.00 ± 2.83 | 62.00 ± 2.83 | -10.00 | {p} | -10.00 | {p} | 2 |" in md
    assert "| [Recurrent cell](#recurrent-cell) | lstm | lstm (default) | 82.00 ± 2.83 |" in md
    assert "**Keep the default (lstm)**: it has the highest mean dev F1 of the 2 levels." in md
    assert "Not available: 00_seed_baseline has no results yet." in md
    assert (tmp_path / "docs" / "study" / "06_cell.png").read_bytes().startswith(PNG)
    assert "![Recurrent cell](study/06_cell.png)" in md
