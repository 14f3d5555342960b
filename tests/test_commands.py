"""`rnner data download` and `rnner report` from the command line.

The download runs as its own process against an HTTP server on loopback that serves files
this test writes: the real corpus's bytes are accepted, a file with one tag changed is
refused and leaves nothing behind. The report reads a sweep that `rnner tune` has just run.
"""

from __future__ import annotations

import csv
import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CONLL, GOOD, needs_conll

from rnner.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server: its base URL and the folder it serves."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _download(url: str, dest: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "rnner.cli",
            "data",
            "download",
            "conll2003",
            "--url",
            url,
            "--dest",
            str(dest),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_data_download_accepts_the_corpus_and_refuses_a_changed_file(served, tmp_path):
    needs_conll()
    url, root = served
    for name in ("train.txt", "dev.txt", "test.txt"):
        shutil.copyfile(CONLL / name, root / name)
    lines = (root / "dev.txt").read_text(encoding="utf-8").split("\n")
    # One tag changed in dev: a re-annotated copy, same size and sentence count.
    i = next(n for n, line in enumerate(lines) if line.endswith(" B-LOC"))
    lines[i] = lines[i][: -len("B-LOC")] + "B-ORG"
    changed = tmp_path / "changed"
    changed.mkdir()
    for name in ("train.txt", "test.txt"):
        shutil.copyfile(CONLL / name, changed / name)
    (changed / "dev.txt").write_text("\n".join(lines), encoding="utf-8")
    shutil.move(str(changed), str(root / "changed"))

    bad = _download(f"{url}/changed", tmp_path / "bad")
    assert bad.returncode == 2, bad.stderr
    assert bad.stdout == ""
    err = bad.stderr
    assert err.startswith("could not obtain conll2003 dev.txt:\n")
    assert f"{url}/changed/dev.txt: SHA-256 " in err
    assert "differs from the expected 98e27eee97edde022caaa568cc46232261ea6722a2132de70b1e1e" in err
    assert "it holds 3250 sentences and 51362 tokens, expected 3250 and 51362" in err
    assert "Traceback" not in err
    # train.txt came first and was right; the refused dev.txt left no file, partial or whole.
    assert sorted(p.name for p in (tmp_path / "bad" / "conll2003").iterdir()) == ["train.txt"]

    good = _download(url, tmp_path / "good")
    assert good.returncode == 0, good.stderr
    folder = tmp_path / "good" / "conll2003"
    assert good.stdout == f"conll2003 is ready in {folder}\n"
    for name in ("train.txt", "dev.txt", "test.txt"):
        assert (folder / name).read_bytes() == (CONLL / name).read_bytes()


SWEEP = f"""
trials = 2
seeds = [1]

[set]
"data.train" = "{GOOD}"
"data.dev" = "{GOOD}"
"data.test" = "{GOOD}"
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
"""


def test_report_command_writes_the_table_csv_and_plots_of_a_sweep(tmp_path, capsys):
    sweep = tmp_path / "sweep.toml"
    sweep.write_text(SWEEP, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["tune", str(sweep), "--workers", "1", "--output", str(out), "--quiet"]) == 0
    capsys.readouterr()

    elsewhere = tmp_path / "report"
    assert main(["report", str(out), "--output", str(elsewhere)]) == 0
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == (f"wrote {elsewhere / 'report.md'}\n", "")
    rows = list(csv.DictReader((elsewhere / "trials.csv").open(encoding="utf-8")))
    assert [(r["trial"], r["state"], r["seed"]) for r in rows] == [
        ("0", "COMPLETE", "1"),
        ("1", "COMPLETE", "1"),
    ]
    lrs = [float(r["train.lr"]) for r in rows]
    assert all(0.01 <= lr <= 0.5 for lr in lrs) and lrs[0] != lrs[1]
    md = (elsewhere / "report.md").read_text(encoding="utf-8")
    for r in rows:  # each trial's dev F1, as a percentage, in the table
        assert f"{100 * float(r['dev_f1']):.2f}" in md
    assert (elsewhere / "learning_curves.png").read_bytes().startswith(PNG)

    assert main(["report", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing" in err
