"""The `rnner` command. Thin: argument parsing, then calls into the library.

Every subcommand is a row of `COMMANDS` (help line, and the `add_NAME_parser` that builds it,
imported only when that command runs); its function is `cmd_NAME`. Errors in the user's input
(files, configs, run directories: any `RnnerError`) print one line and exit 2, in `main` alone.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def _user_errors() -> tuple[type[BaseException], ...]:
    """What `main` reports as one line and exit status 2: the project's own errors, and the
    operating system's refusals to open a file the user named."""
    from .errors import RnnerError

    return (RnnerError, FileNotFoundError, IsADirectoryError, PermissionError)


# What `rnner train --resume RUN_DIR` may change: how long the run goes on, nothing that
# would make the checkpoint's model, data or optimizer state mean something else.
RESUME_KEYS = ("train.epochs", "train.patience")


def cmd_train(args: argparse.Namespace) -> int:
    from . import distributed
    from .config import Config, ConfigError
    from .shipped import config_path
    from .training import Interrupted, fit

    overrides = list(args.set or [])
    for split in ("train", "dev", "test"):
        if getattr(args, split):
            overrides.append(f"data.{split}={json.dumps(getattr(args, split))}")
    if args.epochs:
        overrides.append(f"train.epochs={args.epochs}")
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    if getattr(args, "init", None):
        overrides.append(f"train.init={json.dumps(args.init)}")
    if args.resume:
        output = args.resume
        cfg = _resume_config(args, overrides)
    else:
        if not args.config:
            raise ConfigError("file", "give a CONFIG.toml, or --resume RUN_DIR")
        config = config_path(args.config)  # a path, or a shipped config by name
        cfg = Config.load(config, overrides)
        output = args.output or f"runs/{config.stem}"
    if args.nproc > 1 and distributed.world_size() == 1:  # under torchrun: already a rank
        return distributed.launch(args.nproc, _without_nproc(args.argv))
    try:
        with distributed.session(cfg.train.device) as job:
            metrics = fit(cfg, output, progress=not args.quiet, resume=bool(args.resume))
    except Interrupted as e:
        if job.main:
            print(str(e), file=sys.stderr)
        return 130
    except distributed.DistributedError as e:
        print(f"rnner train: {e}", file=sys.stderr)
        return 1
    if job.main:
        _print_final(metrics, output)
    return 0


def cmd_distill(args: argparse.Namespace) -> int:
    """`rnner train CONFIG` with train.teachers (and train.distill_weight) set."""
    overrides = [f"train.teachers={json.dumps(args.teachers)}"]
    if args.weight is not None:
        overrides.append(f"train.distill_weight={args.weight!r}")
    args.set = overrides + list(args.set or [])
    args.train = args.dev = args.test = args.resume = None
    args.nproc = 1
    return cmd_train(args)


def _resume_config(args: argparse.Namespace, overrides: list[str]) -> Any:
    """The run's saved config with the overrides a resumed run can take (RESUME_KEYS), saved
    back to the run directory; any other override is refused rather than ignored."""
    from . import checkpoint, files
    from .config import Config, ConfigError

    if args.config or args.output:
        flag = "CONFIG.toml" if args.config else "--output"
        raise ConfigError(
            "--resume",
            f"{flag} cannot be given with --resume RUN_DIR (the run "
            "directory holds its config and is the output)",
        )
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        if key not in RESUME_KEYS:
            raise ConfigError(
                key,
                f"cannot change when resuming a run (--resume takes only "
                f"{' and '.join(RESUME_KEYS)})",
            )
    saved = Path(args.resume) / "config.json"
    cfg = Config.load(saved, overrides)
    if overrides and (Path(args.resume) / checkpoint.NAME).is_file():
        files.write_json(saved, cfg.to_dict())  # the run's record: what it trained with
    return cfg


def _without_nproc(argv: Sequence[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def _print_final(metrics: dict, output: str) -> None:
    print(
        f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']} "
        f"({metrics['train_seconds']:.0f} s on {metrics['device']}); run directory: {output}"
    )
    for split in ("dev", "test"):
        if split in metrics:
            e = metrics[split]["entity"]
            print(
                f"{split:5s} entity P/R/F1 {100 * e['precision']:.2f} / "
                f"{100 * e['recall']:.2f} / {100 * e['f1']:.2f}"
            )
    if "test" in metrics:
        print(metrics["test"]["token"]["report_text"])


def cmd_experiment(args: argparse.Namespace) -> int:
    from .config import Config
    from .experiment import SeedInterrupted, markdown, run

    Config.load(args.config, args.set)  # fail fast on a bad config, before any process starts
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    output = args.output or f"runs/{Path(args.config).stem}-seeds"
    try:
        summary = run(args.config, seeds, output, list(args.set or []), workers=args.workers)
    except SeedInterrupted as e:
        print(str(e), file=sys.stderr)
        return 130
    print(markdown(summary, args.config), end="")
    print(f"summary: {output}/summary.json")
    return 0


def cmd_crossweigh(args: argparse.Namespace) -> int:
    from .config import Config
    from .crossweigh import markdown, run
    from .experiment import SeedInterrupted

    Config.load(args.config, args.set)
    output = args.output or f"runs/{Path(args.config).stem}-crossweigh"
    try:
        summary = run(
            args.config,
            output,
            list(args.set or []),
            folds=args.folds,
            iterations=args.iterations,
            eps=args.eps,
            workers=args.workers,
        )
    except SeedInterrupted:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except ValueError as e:
        print(f"rnner crossweigh: {e}", file=sys.stderr)
        return 2
    print(markdown(summary), end="")
    print(f"trust file: {output}/trust.tsv")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from . import conll, metrics
    from .predict import Tagger

    tagger = Tagger.load(args.run_dir)
    sents = conll.read_conll(
        args.data, word_column=tagger.cfg.data.word_column, tag_column=tagger.cfg.data.tag_column
    )
    types = {tag.split("-", 1)[1] for tag in tagger.vocabs.tags.itos if tag != "O"}
    conll.check_tags(sents, args.data, types=types)
    pred = tagger.tag([s.tokens for s in sents], doc_ids=[s.doc_id for s in sents])
    gold = [list(s.tags or ()) for s in sents]
    scores = metrics.entity_scores(gold, pred)
    text, table = metrics.token_report(gold, pred)
    if args.output:
        conll.write_conll(args.output, sents, pred)
    if args.json:
        e = scores.to_dict()
        print(
            json.dumps(
                {
                    "entity": {k: e[k] for k in ("precision", "recall", "f1", "per_type")},
                    "token": {"accuracy": e["accuracy"], "report": table},
                },
                indent=2,
            )
        )
    else:
        print(metrics.conlleval_report(scores), end="")
        print()
        print(text)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from . import metrics

    if args.file == "-":
        gold, pred = metrics.read_conlleval(sys.stdin, path="<stdin>")
    else:
        gold, pred = metrics.read_conlleval(args.file)
    scores = metrics.entity_scores(gold, pred)
    if args.json:
        print(json.dumps(scores.to_dict(), indent=2))
    else:
        print(metrics.conlleval_report(scores), end="")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .errors import InputError
    from .predict import Tagger
    from .stream import predict_stream

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.resume and "-" in (args.input, args.output):
        raise InputError("--resume", None, "needs --input FILE and --output FILE")
    tagger = Tagger.load(args.run_dir)
    return predict_stream(
        tagger,
        args.input,
        args.output,
        args.format,
        args.on_error,
        batch_size=args.batch_size,
        progress=not args.quiet,
        resume=args.resume,
    )


def cmd_export(args: argparse.Namespace) -> int:
    from .runs import export_routed, export_run

    if args.caseless:
        out = export_routed(
            args.run_dir,
            args.caseless,
            args.output,
            half=not args.float32,
            min_share=args.min_share,
            max_lower_sentences=args.max_lower_sentences,
            min_sentences=args.min_sentences,
        )
        what = f"{args.run_dir} (cased) and {args.caseless} (caseless)"
    else:
        out = export_run(args.run_dir, args.output, half=not args.float32)
        what = args.run_dir
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
    print(f"exported {what} to {out} ({size:.1f} MB)")
    return 0


def cmd_data(args: argparse.Namespace) -> int:
    from . import data

    dest = Path(args.dest) if args.dest else data.default_download_dir()
    path = data.download(args.dataset, dest, base_url=args.url)
    print(f"{args.dataset} is ready in {path}")
    return 0


# --- the command table ----------------------------------------------------------------------
# One row per subcommand: its one-line help, and the function (module:name, imported only when
# the command runs, so `rnner --help` stays fast) that adds its parser to the subparsers and
# sets `func`, the `cmd_NAME` that runs it.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train a model from a TOML config", "rnner.cli:add_train_parser"),
    "distill": (
        "train a model on the mean tag marginals of teacher runs mixed with the gold tags",
        "rnner.cli:add_distill_parser",
    ),
    "experiment": (
        "train one config with several seeds; mean ± std",
        "rnner.cli:add_experiment_parser",
    ),
    "crossweigh": (
        "flag training sentences that models trained without them disagree with "
        "(a data.train_trust file)",
        "rnner.cli:add_crossweigh_parser",
    ),
    "evaluate": ("score a run directory on a labelled file", "rnner.cli:add_evaluate_parser"),
    "score": (
        "conlleval: score a file of tokens, gold and predicted tags",
        "rnner.cli:add_score_parser",
    ),
    "predict": ("tag raw text or CoNLL input", "rnner.cli:add_predict_parser"),
    "export": ("a run directory reduced for shipping (float16)", "rnner.cli:add_export_parser"),
    "data": ("obtain datasets", "rnner.cli:add_data_parser"),
    "tune": ("run, resume or join a hyperparameter sweep", "rnner.tune:add_tune_parser"),
    "report": ("tables and plots of a sweep's study", "rnner.report:add_report_parser"),
    "bench": ("measure training and inference speed", "rnner.bench:add_bench_parser"),
    "serve": ("serve a model over HTTP, with a page to try it", "rnner.serve:add_serve_parser"),
    "lexicon": (
        "build a lexicon of names for model.lexicon",
        "rnner.gazetteers:add_lexicon_parser",
    ),
    "robustness": (
        "score a run on lower/UPPER/Title-cased, misspelt and name-swapped copies "
        "of a labelled file",
        "rnner.robustness:add_robustness_parser",
    ),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `rnner` parser: every command listed by its help, and `command` (all of them
    when None) with its full arguments."""
    from . import __version__

    p = argparse.ArgumentParser(
        prog="rnner", description="rnner: recurrent networks for named entity recognition"
    )
    p.add_argument("--version", action="version", version=f"rnner {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for name, (help_text, where) in COMMANDS.items():
        if command is None or name == command:
            module, function = where.split(":")
            getattr(importlib.import_module(module), function)(sub)
        else:
            sub.add_parser(name, help=help_text)
    return p


def add_train_parser(sub: Any) -> argparse.ArgumentParser:
    t = sub.add_parser("train", help=COMMANDS["train"][0])
    t.add_argument(
        "config",
        nargs="?",
        help="TOML config, or a shipped one by name "
        "(conll03: configs/conll03.toml); not needed with --resume",
    )
    t.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    t.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="override a config value (repeatable)",
    )
    t.add_argument("--train", help="training file (CoNLL columns)")
    t.add_argument("--dev", help="development file, for model selection")
    t.add_argument("--test", help="test file, scored once at the end")
    t.add_argument("--epochs", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument(
        "--init",
        metavar="RUN_DIR",
        help="start from this run's weights (fine-tuning; the same tags and architecture)",
    )
    t.add_argument("--output", help="run directory (default runs/CONFIG_NAME)")
    t.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    t.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="train one model in N data-parallel processes (docs/scaling.md)",
    )
    t.set_defaults(func=cmd_train)
    return t


def add_distill_parser(sub: Any) -> argparse.ArgumentParser:
    d = sub.add_parser("distill", help=COMMANDS["distill"][0])
    d.add_argument("teachers", nargs="+", metavar="TEACHER_RUN", help="teacher run directories")
    d.add_argument("--config", required=True, help="the student's TOML config (or shipped name)")
    d.add_argument(
        "--weight",
        type=float,
        help="train.distill_weight: the share of the loss that follows the teachers "
        "(0..1; default: the config's, else 0.5)",
    )
    d.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE")
    d.add_argument("--epochs", type=int)
    d.add_argument("--seed", type=int)
    d.add_argument("--output", help="run directory (default runs/CONFIG_NAME)")
    d.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    d.set_defaults(func=cmd_distill)
    return d


def add_experiment_parser(sub: Any) -> argparse.ArgumentParser:
    x = sub.add_parser("experiment", help=COMMANDS["experiment"][0])
    x.add_argument("config")
    x.add_argument("--seeds", type=int, default=5, help="how many seeds (default 5)")
    x.add_argument("--first-seed", type=int, default=1)
    x.add_argument("--workers", type=int, default=0, help="parallel runs (default: cores)")
    x.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE")
    x.add_argument("--output", help="directory (default runs/CONFIG-seeds)")
    x.set_defaults(func=cmd_experiment)
    return x


def add_crossweigh_parser(sub: Any) -> argparse.ArgumentParser:
    c = sub.add_parser("crossweigh", help=COMMANDS["crossweigh"][0])
    c.add_argument("config")
    c.add_argument("--folds", type=int, default=5, help="folds of training articles (5)")
    c.add_argument("--iterations", type=int, default=1, help="random splits (1)")
    c.add_argument(
        "--eps",
        type=float,
        default=0.7,
        help="trust of a sentence flagged once (0.7); eps**c after c flags",
    )
    c.add_argument("--workers", type=int, default=0, help="parallel runs (default: cores)")
    c.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE")
    c.add_argument("--output", help="directory (default runs/CONFIG-crossweigh)")
    c.set_defaults(func=cmd_crossweigh)
    return c


def add_evaluate_parser(sub: Any) -> argparse.ArgumentParser:
    e = sub.add_parser("evaluate", help=COMMANDS["evaluate"][0])
    e.add_argument("run_dir")
    e.add_argument("--data", required=True)
    e.add_argument("--json", action="store_true")
    e.add_argument("--output", help="also write the predictions as CoNLL columns")
    e.set_defaults(func=cmd_evaluate)
    return e


def add_score_parser(sub: Any) -> argparse.ArgumentParser:
    s = sub.add_parser("score", help=COMMANDS["score"][0])
    s.add_argument("file", help="conlleval input ('-' for stdin)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_score)
    return s


def add_predict_parser(sub: Any) -> argparse.ArgumentParser:
    pr = sub.add_parser("predict", help=COMMANDS["predict"][0])
    pr.add_argument("run_dir", nargs="?", help="run directory (default: the shipped model)")
    pr.add_argument("--input", default="-", help="input file ('-' for stdin)")
    pr.add_argument("--output", default="-", help="output file ('-' for stdout)")
    pr.add_argument(
        "--format",
        choices=("text", "conll", "jsonl"),
        default="jsonl",
        help="text: raw text in, one line per document; conll: tokens in columns; "
        "jsonl: raw text in, spans with offsets out",
    )
    pr.add_argument("--on-error", choices=("fail", "skip"), default="fail")
    pr.add_argument("--batch-size", type=int, default=256)
    pr.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    pr.add_argument("--quiet", action="store_true")
    pr.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted run from OUTPUT.partial (Ctrl-C or SIGTERM "
        "stop after the current chunk and keep it)",
    )
    pr.set_defaults(func=cmd_predict)
    return pr


def add_export_parser(sub: Any) -> argparse.ArgumentParser:
    ex = sub.add_parser("export", help=COMMANDS["export"][0])
    ex.add_argument("run_dir")
    ex.add_argument("output")
    ex.add_argument("--float32", action="store_true", help="keep float32 weights")
    ex.add_argument(
        "--caseless",
        metavar="RUN_DIR",
        help="a second run for text without case: the output is a routed model that reads "
        "each document with run_dir when it has case, else with this one (docs/robustness.md)",
    )
    ex.add_argument(
        "--min-share",
        type=float,
        default=0.02,
        help="with --caseless: a document has case when at least this share of its words is "
        "lower-case and this share capitalised (0.02)",
    )
    ex.add_argument(
        "--max-lower-sentences",
        type=float,
        default=0.2,
        help="with --caseless: ... and at most this share of its sentences all lower-case (0.2)",
    )
    ex.add_argument(
        "--min-sentences",
        type=int,
        default=2,
        help="with --caseless: ... and at least this many sentences (2)",
    )
    ex.set_defaults(func=cmd_export)
    return ex


def add_data_parser(sub: Any) -> argparse.ArgumentParser:
    d = sub.add_parser("data", help=COMMANDS["data"][0])
    dsub = d.add_subparsers(dest="data_command", required=True)
    dl = dsub.add_parser("download", help="download and verify a dataset")
    dl.add_argument("dataset", choices=("conll2003",))
    dl.add_argument("--dest", help="directory (default ~/.cache/rnner/data)")
    dl.add_argument("--url", help="base URL holding train.txt, dev.txt, test.txt")
    dl.set_defaults(func=cmd_data)
    return d


def main(argv: Sequence[str] | None = None) -> int:
    """`rnner`: every command, whichever module holds it, runs here under one error handler:
    an `RnnerError` (or a file the OS refuses) is one line on stderr and exit status 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command or "").parse_args(argv)  # "": no command, help only
    args.argv = argv  # for commands that start copies of themselves (train --nproc)
    try:
        return args.func(args)
    except _user_errors() as e:
        msg = str(e)
        if isinstance(e, OSError) and e.filename:
            msg = f"{e.filename}: {e.strerror}"
        print(msg, file=sys.stderr)
        return 2
    except BrokenPipeError:  # `rnner predict ... | head`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
