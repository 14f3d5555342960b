"""Data-parallel training on the CPU: 2 ranks over gloo on loopback (`rnner train --nproc 2`)."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import children, tiny_sections, to_toml, wait_gone
from safetensors.torch import load_file

from rnner.cli import main
from rnner.distributed import Group

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="torch built without torch.distributed"
)

TAGS = ["B-PER", "E-PER", "S-LOC", "S-ORG", "O", "O", "O"]


def corpus(path: Path, sentences: int, seed: int = 0) -> Path:
    """Sentences of different lengths from a small vocabulary, BIOES tags."""
    rnd = random.Random(seed)
    words = ["Anna", "Berlin", "IBM", "saw", "the", "went", "to", "and", "Smith", "Paris"]
    lines = []
    for _ in range(sentences):
        for _ in range(rnd.randint(2, 9)):
            tag = rnd.choice(["S-LOC", "S-ORG", "S-PER", "O", "O"])
            lines.append(f"{rnd.choice(words)} {tag}")
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def config(tmp_path: Path, data: Path, **train: object) -> Path:
    sections = tiny_sections(
        data={"train": str(data), "dev": str(data), "test": str(data)},
        train={"optimizer": "sgd", "lr": 0.2, "momentum": 0.0, **train},
    )
    path = tmp_path / "ddp.toml"
    path.write_text(to_toml(sections), encoding="utf-8")
    return path


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "model.safetensors"))


def test_dealing_gives_every_batch_once_and_weights_sum_to_the_world():
    batches = [list(range(n)) for n in (3, 2, 4, 1, 5)]
    ranks = [Group(rank=r, world=2).deal(batches, position=2) for r in (0, 1)]
    assert [a for a, _, _ in ranks[0]] == [a for a, _, _ in ranks[1]] == [4, 5]
    assert [b for _, b, _ in ranks[0]] == [[0, 1, 2, 3], [0, 1, 2, 3, 4]]
    assert [b for _, b, w in ranks[1] if w] == [[0]]
    # weight = world * rows / rows of the step: 2*4/5 and 2*1/5; the idle rank weighs 0
    assert [w for _, _, w in ranks[0]] == pytest.approx([8 / 5, 2.0])
    assert [w for _, _, w in ranks[1]] == pytest.approx([2 / 5, 0.0])


def test_one_step_on_two_ranks_is_one_step_on_the_union_of_their_batches(tmp_path, capfd):
    """5 sentences, batch 3: rank 0 takes 3 and rank 1 takes 2 in the one step of the epoch;
    one process with batch 6 takes one step on all 5. Plain gradient averaging would weigh
    rank 1's 2 sentences like rank 0's 3, and the weights would differ."""
    data = corpus(tmp_path / "five.txt", 5)
    cfg = config(tmp_path, data, batch_size=3, epochs=1)
    assert (
        main(["train", str(cfg), "--nproc", "2", "--output", str(tmp_path / "ddp"), "--quiet"]) == 0
    )
    assert (
        main(
            [
                "train",
                str(cfg),
                "--set",
                "train.batch_size=6",
                "--output",
                str(tmp_path / "one"),
                "--quiet",
            ]
        )
        == 0
    )
    ddp, one = weights(tmp_path / "ddp"), weights(tmp_path / "one")
    init = tmp_path / "init"
    assert main(["train", str(cfg), "--set", "train.lr=0.0", "--output", str(init), "--quiet"]) == 0
    moved = max((one[k] - weights(init)[k]).abs().max().item() for k in one)
    assert moved > 1e-3  # the step did change the weights
    assert ddp.keys() == one.keys()
    for k in one:
        torch.testing.assert_close(ddp[k], one[k], rtol=1e-5, atol=1e-6, msg=k)
    out = capfd.readouterr().out
    assert out.count("best epoch 1 of 1") == 3  # rank 0 alone printed its result

    # The same job launched by torchrun (as across machines) trains the same model.
    torchrun = Path(sys.executable).with_name("torchrun")
    if torchrun.is_file():
        subprocess.run(
            [
                str(torchrun),
                "--standalone",
                "--nproc-per-node",
                "2",
                "-m",
                "rnner.cli",
                "train",
                str(cfg),
                "--output",
                str(tmp_path / "torchrun"),
                "--quiet",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        run = weights(tmp_path / "torchrun")
        for k in one:
            torch.testing.assert_close(run[k], ddp[k], rtol=0, atol=0, msg=k)


def _log(run: Path) -> list[dict]:
    keep = ("epoch", "train_loss", "dev_f1", "lr", "best")
    return [
        {k: r[k] for k in keep}
        for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())
    ]


def _rank(pid: int) -> int:
    env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return int(next(v for v in env if v.startswith(b"RANK=")).split(b"=", 1)[1])


def _start(cfg: Path, out: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rnner.cli",
            "train",
            str(cfg),
            "--nproc",
            "2",
            "--output",
            str(out),
            "--quiet",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        start_new_session=True,
    )


def _communicate(proc: subprocess.Popen, seconds: float) -> str:
    """stderr once the launcher and its ranks are done; kill them all if they outlive it."""
    try:
        return proc.communicate(timeout=seconds)[1]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher's session: its ranks too
        proc.communicate()
        pytest.fail(f"the job was still running after {seconds} s")


def _wait_for_epochs(out: Path, proc: subprocess.Popen, n: int) -> None:
    deadline = time.monotonic() + 120
    log = out / "log.jsonl"
    while not (log.is_file() and len(log.read_text().splitlines()) >= n):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail(f"training did not start: {proc.communicate()}")
        time.sleep(0.05)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")
def test_two_ranks_interrupted_and_resumed_end_as_an_uninterrupted_run(tmp_path):
    data = corpus(tmp_path / "train.txt", 16)
    cfg = config(tmp_path, data, batch_size=2, epochs=6)
    whole = tmp_path / "whole"
    assert main(["train", str(cfg), "--nproc", "2", "--output", str(whole), "--quiet"]) == 0

    out = tmp_path / "cut"
    proc = _start(cfg, out)
    _wait_for_epochs(out, proc, 2)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the launcher and both ranks get it
    err = _communicate(proc, 60)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == f"interrupted; resume with: rnner train --resume {out}"
    assert len(_log(out)) < 6

    assert main(["train", "--resume", str(out), "--nproc", "2", "--quiet"]) == 0
    assert _log(out) == _log(whole)
    m_cut, m_whole = (json.loads((r / "metrics.json").read_text()) for r in (out, whole))
    assert m_cut["dev"]["entity"] == m_whole["dev"]["entity"]
    assert m_cut["best_epoch"] == m_whole["best_epoch"]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")
def test_a_rank_that_dies_stops_the_job_with_its_name(tmp_path):
    data = corpus(tmp_path / "train.txt", 30)
    cfg = config(tmp_path, data, batch_size=2, epochs=100000, patience=0)
    out = tmp_path / "run"
    proc = _start(cfg, out)
    _wait_for_epochs(out, proc, 1)
    ranks = {_rank(p): p for p in children(proc.pid)}
    assert sorted(ranks) == [0, 1]
    os.kill(ranks[1], signal.SIGKILL)
    err = _communicate(proc, 60)
    wait_gone(list(ranks.values()), 30)
    assert proc.returncode == 1
    assert err.strip().splitlines()[-1] == (
        "rnner train: rank 1 of 2 was killed by signal 9; stopped the other ranks"
    )


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")
def test_a_rank_that_stops_answering_times_out_instead_of_hanging(tmp_path):
    data = corpus(tmp_path / "train.txt", 30)
    cfg = config(tmp_path, data, batch_size=2, epochs=100000, patience=0)
    out = tmp_path / "run"
    proc = _start(cfg, out, env={"RNNER_DIST_TIMEOUT": "5"})
    _wait_for_epochs(out, proc, 1)
    ranks = {_rank(p): p for p in children(proc.pid)}
    os.kill(ranks[1], signal.SIGSTOP)  # alive, but silent
    started = time.monotonic()
    try:
        err = _communicate(proc, 90)
    finally:
        for p in ranks.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGCONT)
    wait_gone(list(ranks.values()), 30)
    assert proc.returncode == 1
    assert time.monotonic() - started < 60
    lines = err.strip().splitlines()
    assert any(
        line.startswith("rnner train: rank 0: another rank of the job stopped answering")
        for line in lines
    ), err
    assert lines[-1] == "rnner train: rank 0 of 2 exited with status 1; stopped the other ranks"


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc")
def test_sigterm_to_the_launcher_alone_checkpoints_and_stops_its_ranks(tmp_path):
    data = corpus(tmp_path / "train.txt", 16)
    cfg = config(tmp_path, data, batch_size=2, epochs=100000, patience=0)
    out = tmp_path / "run"
    proc = _start(cfg, out)
    _wait_for_epochs(out, proc, 1)
    ranks = children(proc.pid)
    proc.send_signal(signal.SIGTERM)  # the launcher only, as `kill` or a scheduler sends it
    err = _communicate(proc, 60)
    wait_gone(ranks, 30)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == f"interrupted; resume with: rnner train --resume {out}"
    assert (out / "checkpoint.safetensors").is_file()
