"""rnner's default against the closest flair configuration, side by side in one window.

    python benchmarks/peers/flair_vs_rnner.py --flair-python /path/to/flairvenv/bin/python \\
        [--sentences 2000] [--dev-sentences 500] [--rounds 2] [--threads 2]

flair (0.15.1 measured) lives in a venv of its own; this script installs nothing. Both sides
train one epoch on the first `--sentences` sentences of CoNLL-2003 train and tag the first
`--dev-sentences` of dev, rounds alternating flair and rnner so a busier spell of the machine
falls on both; medians and ratios are printed. flair: SequenceTagger, hidden 256, CRF, GloVe
6B 50d (the vectors rnner uses, written as a local file) + a character LSTM over a character
dictionary built from the training data, SGD at 0.1, batch 32, offline (`flair_side.py`).
rnner: `configs/conll03.toml` as it is (Adam, batch 32), `rnner train --epochs 1`, then
`rnner.predict.Tagger.tag` at batch 32 (timed after loading, as flair's `predict`).
Training rates are sentences/s of the epoch's training (rnner: the log's `sentences_per_s`;
flair: its `train` call, which also scores dev once, so flair's rate is a little low);
tagging rates are tokens/s of the tagging call alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def first_sentences(src: Path, dst: Path, count: int) -> int:
    """The first `count` sentences of a CoNLL file (document markers left out); tokens."""
    out, sentence, n, tokens = [], [], 0, 0
    for line in src.read_text(encoding="utf-8").splitlines() + [""]:
        if line.strip() and not line.startswith("-DOCSTART-"):
            sentence.append(line)
        elif sentence:
            out += sentence + [""]
            n, tokens, sentence = n + 1, tokens + len(sentence), []
            if n == count:
                break
    dst.write_text("\n".join(out) + "\n", encoding="utf-8")
    return tokens


def rnner_round(work: Path, threads: int, dev_tokens: int) -> dict[str, Any]:
    run = work / "rnner-run"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    cli = [sys.executable, "-m", "rnner.cli"]
    subprocess.run(
        [
            *cli,
            "train",
            str(ROOT / "configs/conll03.toml"),
            "--epochs",
            "1",
            "--quiet",
            "--output",
            str(run),
            "--set",
            f"train.threads={threads}",
            "--set",
            f'data.train="{work / "train.txt"}"',
            "--set",
            f'data.dev="{work / "dev.txt"}"',
            "--set",
            f'data.test="{work / "dev.txt"}"',
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    log = json.loads((run / "log.jsonl").read_text().splitlines()[0])
    # tagging timed in-process after loading, as flair's `predict` call is
    code = (
        "import json, sys, time, torch; from rnner.predict import Tagger; "
        "torch.set_num_threads(int(sys.argv[3])); t = Tagger.load(sys.argv[1]); "
        "lines = open(sys.argv[2], encoding='utf-8').read().split('\\n\\n'); "
        "sents = [[w.split()[0] for w in b.splitlines() if w.strip()] for b in lines]; "
        "sents = [x for x in sents if x]; t0 = time.perf_counter(); "
        "t.tag(sents, batch_size=32); print(time.perf_counter() - t0)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(run), str(work / "dev.txt"), str(threads)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    seconds = float(out.strip().splitlines()[-1])
    return {
        "tool": "rnner",
        "train_sentences_per_s": log["sentences_per_s"],
        "predict_tokens_per_s": dev_tokens / seconds,
        "dev_f1": 100 * log["dev_f1"],
    }


def flair_round(work: Path, flair_python: str, threads: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            flair_python,
            str(Path(__file__).with_name("flair_side.py")),
            str(work),
            str(work / "glove.txt"),
            "--threads",
            str(threads),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--flair-python", required=True, help="the Python of a venv with flair")
    p.add_argument("--data", default=os.environ.get("RNNER_DATA", str(ROOT.parent / "shared/data")))
    p.add_argument("--sentences", type=int, default=2000)
    p.add_argument("--dev-sentences", type=int, default=500)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", help="write every round's results here")
    args = p.parse_args(argv)
    conll = Path(args.data) / "conll2003"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        first_sentences(conll / "train.txt", work / "train.txt", args.sentences)
        dev_tokens = first_sentences(conll / "dev.txt", work / "dev.txt", args.dev_sentences)
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "research/glove_subset.py"),
                str(work / "glove.txt"),
                str(work / "train.txt"),
                str(work / "dev.txt"),
            ],
            env=dict(os.environ, PYTHONPATH=str(ROOT / "src")),
            check=True,
            capture_output=True,
        )
        runs: dict[str, list[dict[str, Any]]] = {"flair": [], "rnner": []}
        for r in range(args.rounds):
            for tool in ("flair", "rnner") if r % 2 == 0 else ("rnner", "flair"):
                res = (
                    flair_round(work, args.flair_python, args.threads)
                    if tool == "flair"
                    else rnner_round(work, args.threads, dev_tokens)
                )
                runs[tool].append(res)
                print(f"round {r + 1}: {tool} {json.dumps(res)}", file=sys.stderr, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=1) + "\n", encoding="utf-8")
    print(
        f"{args.sentences} training sentences, 1 epoch; {args.dev_sentences} dev sentences; "
        f"{args.threads} threads; medians of {args.rounds} alternating rounds"
    )
    print("| measurement | flair | rnner | rnner / flair |")
    print("|---|---|---|---|")
    for key, label in (
        ("train_sentences_per_s", "train sentences/s"),
        ("predict_tokens_per_s", "tag tokens/s (batch 32)"),
        ("dev_f1", "dev F1 after the epoch"),
    ):
        f = statistics.median(x[key] for x in runs["flair"])
        n = statistics.median(x[key] for x in runs["rnner"])
        ratio = f"{n / f:.2f}" if f else "-"
        print(f"| {label} | {f:.1f} | {n:.1f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
