"""Sweeps: parsing, sampling, resuming, abandoned trials, several workers, and the report."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import (
    checkpoint_progress,
    children,
    default_sigint,
    needs_conll,
    sigint_alone,
    stopped_by_signal,
    wait_gone,
)
from optuna.trial import TrialState

from rnner.config import Config, ConfigError
from rnner.report import groups, importances, report
from rnner.training import fit
from rnner.tune import (
    SweepError,
    build_sampler,
    find_stale,
    host_id,
    load_sweep,
    main_tune,
    sample,
    set_value,
    tune,
)

ROOT = Path(__file__).resolve().parent.parent
SMALL = ROOT / "tests" / "data" / "good" / "small.txt"
PNG = b"\x89PNG\r\n\x1a\n"

# Three sentences for train, dev and test, a tiny model: a trial takes well under a second.
TINY = f"""
trials = 2
seeds = [1]

[set]
"data.train" = "{SMALL}"
"data.dev" = "{SMALL}"
"data.test" = "{SMALL}"
"model.embeddings" = "random"
"model.word_dim" = 8
"model.casing_dim" = 0
"model.char_dim" = 4
"model.char_hidden" = 4
"model.hidden_size" = 8
"train.epochs" = 2
"train.threads" = 1

[sampler]
type = "random"
seed = 3

[search."train.lr"]
type = "float"
low = 0.01
high = 0.5
log = true

[search."train.batch_size"]
choices = [1, 2, 3]
"""

CONDITIONAL = """
[search."train.optimizer"]
choices = ["sgd", "adam"]

[search."train.momentum"]
choices = [0.0, 0.9]
when = 'train.optimizer == "sgd"'

[search."train.lr@sgd"]
type = "float"
low = 0.05
high = 0.5
log = true
when = 'train.optimizer == "sgd"'

[search."train.lr@adam"]
type = "float"
low = 0.0001
high = 0.001
log = true
when = 'train.optimizer in ["adam"]'
"""


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def open_study(output: Path, name: str = "sweep") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{output / 'study.db'}")


@pytest.fixture
def conll_data():
    needs_conll()


# --- parsing and sampling ---------------------------------------------------------------------


def test_conditional_params_are_sampled_only_when_their_condition_holds(tmp_path):
    sweep = load_sweep(write(tmp_path, CONDITIONAL))
    study = optuna.create_study(direction="maximize", sampler=build_sampler(sweep))
    optimizers = set()
    for _ in range(40):
        trial = study.ask()
        raw = sample(trial, sweep)
        opt = raw["train"]["optimizer"]
        optimizers.add(opt)
        assert ("train.momentum" in trial.params) == (opt == "sgd")
        assert set(trial.params) - {"train.optimizer", "train.momentum"} == {f"train.lr@{opt}"}
        low, high = (0.05, 0.5) if opt == "sgd" else (0.0001, 0.001)
        assert low <= raw["train"]["lr"] <= high
        Config.from_dict(raw)  # every sample is a valid config
        study.tell(trial, 0.0)
    assert optimizers == {"sgd", "adam"}


def test_trial_seeded_sampler_differs_across_workers_and_repeats_per_trial(tmp_path):
    """Two same-seeded workers must not propose the same parameters; one worker reproduces."""
    sweep = load_sweep(write(tmp_path, TINY))
    storage = optuna.storages.InMemoryStorage()
    a = optuna.create_study(storage=storage, study_name="s", sampler=build_sampler(sweep))
    b = optuna.load_study(storage=storage, study_name="s", sampler=build_sampler(sweep))
    proposals = []
    for study in (a, b, a, b):
        trial = study.ask()
        sample(trial, sweep)
        proposals.append(trial.params["train.lr"])
    assert len(set(proposals)) == 4
    again = optuna.create_study(sampler=build_sampler(sweep))
    replay = []
    for _ in range(4):
        trial = again.ask()
        sample(trial, sweep)
        replay.append(trial.params["train.lr"])
    assert replay == proposals


BAD = [
    (
        '[search."train.lrr"]\nchoices = [1]\n',
        r"search\.train\.lrr: unknown config key 'train\.lrr'",
    ),
    ('[search."optim.lr"]\nchoices = [1]\n', r"search\.optim\.lr: unknown config key"),
    (
        '[search."train.lr"]\ntype = "float"\nlo = 0.1\nhigh = 1.0\n',
        r"search\.train\.lr: unknown field 'lo'",
    ),
    (
        '[search."train.momentum"]\nchoices = [0.9]\nwhen = \'train.optimiser == "sgd"\'\n',
        r"search\.train\.momentum: unknown config key 'train\.optimiser'",
    ),
    (
        '[search."model.cell"]\nchoices = ["lstm", "transformer"]\n',
        r"search\.model\.cell: value 'transformer' is invalid",
    ),
    (
        '[set]\n"model.hiden_size" = 3\n[search."train.lr"]\nchoices = [0.1]\n',
        r"set\.model\.hiden_size: unknown config key",
    ),
    (
        '[search."train.momentum"]\nchoices = [0.9]\nwhen = \'train.optimizer == "sgd"\'\n'
        '[search."train.optimizer"]\nchoices = ["sgd"]\n',
        r"sampled later",
    ),
    (
        '[search."train.lr@a"]\nchoices = [0.1]\n[search."train.lr@b"]\nchoices = [0.2]\n',
        r"several parameters set train\.lr",
    ),
    ('[search."train.seed"]\nchoices = [1, 2]\n', r"seeds = \[1, 2, 3\]"),
    (
        '[search."train.lr"]\ntype = "float"\nlow = 0.0\nhigh = 1.0\nlog = true\n',
        r"search\.train\.lr: a log-scaled range needs low > 0",
    ),
    ('colour = 1\n[search."train.lr"]\nchoices = [0.1]\n', r"colour: unknown key"),
    (
        '[sampler]\ntype = "grid"\n[search."train.lr"]\ntype = "float"\nlow = 0.1\nhigh = 1.0\n',
        r"search\.train\.lr: the grid sampler needs",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_sweeps_fail_with_the_key_named(tmp_path, text, message):
    with pytest.raises(SweepError, match=message) as info:
        load_sweep(write(tmp_path, text))
    assert isinstance(info.value, ConfigError)  # the CLI's one-line user-error path
    assert str(tmp_path / "sweep.toml") in str(info.value)


def test_reading_a_sweep_imports_neither_optuna_nor_torch(tmp_path):
    """The sweep spec is checked (and `rnner --help` runs) without the heavy libraries."""
    path = write(tmp_path, CONDITIONAL)
    code = (
        f"import sys; from rnner.tune import load_sweep; load_sweep({str(path)!r}); "
        "print(sorted({'optuna', 'torch'} & set(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out == "[]\n"


def test_grid_target_is_the_grid_and_caps_trials(tmp_path):
    text = (
        '[sampler]\ntype = "grid"\n[search."train.lr"]\nchoices = [0.1, 0.2]\n'
        '[search."model.layers"]\ntype = "int"\nlow = 1\nhigh = 3\n'
    )
    sweep = load_sweep(write(tmp_path, text))
    assert sweep.grid() == {"train.lr": [0.1, 0.2], "model.layers": [1, 2, 3]}
    assert sweep.target(None) == 6
    assert sweep.target(100) == 6
    assert sweep.target(4) == 4


# --- running, resuming, abandoned trials ------------------------------------------------------


def test_resume_runs_only_the_missing_trials_and_retries_abandoned_ones(tmp_path):
    path = write(tmp_path, TINY)
    out = tmp_path / "out"
    first = tune(path, trials=2, output=out, quiet=True)
    assert first["finished"] == 2
    study = open_study(out)
    before = {t.number: t.datetime_complete for t in study.trials}
    assert sorted(before) == [0, 1]

    # The report copes with a small study: table, plots, and no importances from 2 trials.
    md = report(study, tmp_path / "rep").read_text()
    assert "Not computed: 2 complete trials, at least 4 needed." in md
    assert (tmp_path / "rep" / "learning_curves.png").read_bytes().startswith(PNG)

    # A trial made by hand and left RUNNING, and one whose worker process died after it had
    # finished its first seed.
    bare = study.ask()
    sweep = load_sweep(path)
    dead = study.ask()
    raw = sample(dead, sweep)
    set_value(raw, "train.seed", 1)
    done = fit(
        Config.from_dict(raw), out / "trials" / f"{dead.number:04d}" / "seed-1", progress=False
    )
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead.set_user_attr("worker", {"host": host_id(), "pid": proc.pid})
    assert [t.number for t in find_stale(study, stale_after=3600)] == [dead.number]
    assert len(finished(study)) == 2  # RUNNING trials are not finished

    second = tune(path, trials=4, output=out, stale_after=0, quiet=True)
    assert second["finished"] == 4
    study = open_study(out)
    states = {t.number: t.state for t in study.trials}
    assert states[bare.number] == states[dead.number] == TrialState.FAIL
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4
    assert {t.number: t.datetime_complete for t in complete if t.number in before} == before
    retries = [t for t in complete if t.user_attrs.get("retry_of") == dead.number]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.params == dead.params
    run = retry.user_attrs["runs"][0]
    assert run.get("resumed") is True
    assert run["dev_f1"] == done["dev"]["entity"]["f1"]
    assert (out / "trials" / f"{retry.number:04d}" / "seed-1" / "metrics.json").is_file()

    # Nothing left to do: a third run adds no trial.
    third = tune(path, trials=4, output=out, quiet=True)
    assert len(open_study(out).trials) == len(study.trials)
    assert third["finished"] == 4


def test_interrupted_trial_is_retried_and_resumes_to_the_uninterrupted_result(
    tmp_path, monkeypatch
):
    import rnner.training

    path = write(tmp_path, TINY.replace('"train.epochs" = 2', '"train.epochs" = 4'))
    out = tmp_path / "out"
    real_fit = rnner.training.fit

    def interrupted_fit(cfg, output, hooks=(), **kw):
        def ctrl_c(record):
            if record["epoch"] == 1:
                os.kill(os.getpid(), signal.SIGINT)  # as if Ctrl-C: stops at the next batch

        return real_fit(cfg, output, hooks=[*hooks, ctrl_c], **kw)

    monkeypatch.setattr(rnner.training, "fit", interrupted_fit)
    with pytest.raises(KeyboardInterrupt):
        tune(path, trials=2, output=out, quiet=True)
    monkeypatch.setattr(rnner.training, "fit", real_fit)
    study = open_study(out)
    first, waiting = study.trials
    assert first.state == TrialState.FAIL and "interrupted" in first.user_attrs["error"]
    assert waiting.state == TrialState.WAITING and waiting.user_attrs["retry_of"] == 0
    assert (out / "trials" / "0000" / "seed-1" / "checkpoint.safetensors").is_file()

    assert tune(path, trials=2, output=out, quiet=True)["finished"] == 2
    retry = open_study(out).trials[1]
    assert retry.state == TrialState.COMPLETE and retry.params == first.params
    run = retry.user_attrs["runs"][0]
    assert run["resumed"] is True and len(run["dev_curve"]) == 4
    cfg = Config.from_dict(retry.user_attrs["config"])
    alone = fit(cfg, tmp_path / "alone", progress=False)
    assert run["dev_f1"] == alone["dev"]["entity"]["f1"]
    assert run["test_f1"] == alone["test"]["entity"]["f1"]
    assert not (out / "trials" / "0001" / "seed-1" / "checkpoint.safetensors").exists()


def test_a_sweep_over_train_on_dev_trains_each_level_on_its_own_data(tmp_path, monkeypatch):
    """Corpora are cached per worker; the cache key must hold every data field that changes
    what load_corpus reads, or every trial trains on the first trial's data."""
    import rnner.training

    grid = TINY.split("[sampler]")[0] + (
        '"train.select" = "last"\n[sampler]\ntype = "grid"\n'
        '[search."data.train_on_dev"]\nchoices = [false, true]\n'
    )
    real_fit = rnner.training.fit
    seen: dict[bool, int] = {}

    def counting_fit(cfg, output, corpus=None, **kw):
        seen[cfg.data.train_on_dev] = len(corpus.train)
        return real_fit(cfg, output, corpus=corpus, **kw)

    monkeypatch.setattr(rnner.training, "fit", counting_fit)
    assert tune(write(tmp_path, grid), output=tmp_path / "out", quiet=True)["finished"] == 2
    assert seen == {False: 3, True: 6}  # small.txt holds 3 sentences; dev is small.txt too


def test_main_tune_reports_a_bad_sweep_in_one_line(tmp_path, capsys):
    path = write(tmp_path, '[search."train.lrr"]\nchoices = [0.1]\n')
    assert main_tune([str(path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "search.train.lrr: unknown config key" in err


def test_a_changed_sweep_does_not_join_the_old_study(tmp_path):
    out = tmp_path / "out"
    tune(write(tmp_path, TINY), trials=1, output=out, quiet=True)
    changed = TINY.replace("choices = [1, 2, 3]", "choices = [1, 2]")
    with pytest.raises(SweepError, match="different sweep"):
        tune(write(tmp_path, changed), trials=2, output=out, quiet=True)


def test_two_workers_share_one_journal_file(tmp_path):
    journal = tmp_path / "shared" / "study.journal"
    path = write(tmp_path, TINY.replace('"train.epochs" = 2', '"train.epochs" = 4'))
    summary = tune(
        path, trials=5, workers=2, storage=f"journal:{journal}", output=tmp_path / "out", quiet=True
    )
    assert summary["exit_codes"] == [0, 0]
    assert journal.is_file()
    study = optuna.load_study(
        study_name="sweep",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(journal))
        ),
    )
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 5
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    assert len({json.dumps(t.params, sort_keys=True) for t in complete}) == 5
    assert len({t.user_attrs["worker"]["pid"] for t in complete}) == 2  # both took trials


# --- the smoke sweep, end to end --------------------------------------------------------------


def test_smoke_sweep_with_two_workers_then_report(tmp_path, conll_data):
    out = tmp_path / "smoke"
    started = time.perf_counter()
    summary = tune(ROOT / "configs" / "sweeps" / "smoke.toml", workers=2, output=out, quiet=True)
    assert time.perf_counter() - started < 120
    assert summary["finished"] == summary["target"] == 4
    study = open_study(out, "smoke")
    trials = finished(study)
    assert len(trials) == 4
    for t in trials:
        a = t.user_attrs
        assert a["config"]["data"]["max_sentences"] == 150
        assert a["config"]["train"]["lr"] == t.params["train.lr"]
        assert a["seeds"] == [1, 2] and [r["seed"] for r in a["runs"]] == [1, 2]
        assert [len(c) for c in a["dev_f1_per_epoch"]] == [2, 2] == a["epochs_run"]
        assert a["best_dev_f1"] == pytest.approx(t.value)
        assert a["best_dev_f1"] == pytest.approx(sum(r["dev_f1"] for r in a["runs"]) / 2)
        for r, curve in zip(a["runs"], a["dev_f1_per_epoch"], strict=True):
            assert r["dev_f1"] == pytest.approx(max(curve))  # the best epoch's dev F1
        assert 0.0 <= a["test_f1"] <= 1.0
        assert a["wall_seconds"] > 0 and a["peak_rss_mb"] > 10
        for seed in (1, 2):
            run = out / "trials" / f"{t.number:04d}" / f"seed-{seed}"
            assert (run / "metrics.json").is_file() and (run / "log.jsonl").is_file()
            assert not (run / "model.safetensors").exists()
            assert not (run / "checkpoint.safetensors").exists()
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 4

    path = report(study, out)
    md = path.read_text()
    assert md.count("\n| ") == 1 + 4 + 2 + 1  # configurations header + rows, importances
    rows = groups(study)
    assert [g.dev_mean for g in rows] == sorted((g.dev_mean for g in rows), reverse=True)
    assert f"| 1 | {rows[0].trials[0]} |" in md
    for name in ("learning_curves.png", "f1_vs_time.png", "lr_by_optimizer.png", "batch_size.png"):
        assert (out / name).read_bytes().startswith(PNG), name
    assert not (out / "optimizers.png").exists()  # one optimizer: no per-optimizer plot
    imp, why = importances(study)
    assert set(imp) == {"train.lr", "train.batch_size"}, why
    lines = (out / "trials.csv").read_text().splitlines()
    assert len(lines) == 1 + 4 * 2


# Long enough that the signal, sent once both trials have logged epoch 1, lands mid-training;
# short enough that rerunning the command finishes them.
LONG_EPOCHS = 60


def _tune_argv(path: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rnner.cli",
        "tune",
        str(path),
        "--workers",
        "2",
        "--output",
        str(out),
        "--quiet",
    ]


def _tune_training(tmp_path: Path) -> tuple[subprocess.Popen, Path, list[int]]:
    """`rnner tune` with two workers, returned once both are training long trials."""
    path = write(
        tmp_path,
        TINY.replace('"train.epochs" = 2', f'"train.epochs" = {LONG_EPOCHS}\n"train.patience" = 0'),
    )
    out = tmp_path / "out"
    parent = subprocess.Popen(
        _tune_argv(path, out), stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint
    )
    deadline = time.monotonic() + 120
    while len(list(out.glob("trials/*/*/log.jsonl"))) < 2:
        if time.monotonic() > deadline or parent.poll() is not None:
            parent.kill()
            pytest.fail("the trials did not start")
        time.sleep(0.05)
    return parent, out, children(parent.pid)


def _stopped_early(run: Path) -> bool:
    """Stopped by the signal: a mid-epoch checkpoint (which only the handler writes), or, when
    the signal came while the epoch's dev set was scored (a large share of an epoch of three
    sentences), the checkpoint of the epoch just ended, long before the trial's last epoch."""
    if stopped_by_signal(run):
        return True
    logged = len((run / "log.jsonl").read_text(encoding="utf-8").splitlines())
    progress = checkpoint_progress(run)
    return progress["position"] == 0 and progress["epoch"] == logged + 1 < LONG_EPOCHS


def _stopped_then_resumed(out: Path) -> None:
    """Both trials hold the checkpoint of their signal handler (a mid-epoch one); the same
    command again resumes them from it and finishes the sweep."""
    runs = sorted(out.glob("trials/*/*/checkpoint.safetensors"))
    assert len(runs) == 2
    assert all(_stopped_early(r.parent) for r in runs)
    path = out.parent / "sweep.toml"
    done = subprocess.run(_tune_argv(path, out), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    complete = [t for t in open_study(out).trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 2
    for t in complete:
        [run] = t.user_attrs["runs"]
        assert run["resumed"] is True and len(run["dev_curve"]) == LONG_EPOCHS


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to find the workers")
def test_sigint_to_tune_alone_stops_its_workers(tmp_path):
    """`kill -INT` reaches the tune process only (Ctrl-C signals the whole group): it must
    pass the stop on to its workers, not wait for their trials to end."""
    parent, out, workers = _tune_training(tmp_path)
    status, last = sigint_alone(parent, workers)
    assert status == 130
    assert last == "interrupted; rerun the same command to resume"
    _stopped_then_resumed(out)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to find the workers")
def test_killing_tune_stops_its_workers_with_a_checkpoint(tmp_path):
    parent, out, workers = _tune_training(tmp_path)
    parent.kill()  # SIGKILL: nothing of it runs again
    parent.wait(timeout=30)
    wait_gone(workers, 60)
    _stopped_then_resumed(out)
