"""`rnner serve`: a trained model behind HTTP (FastAPI on uvicorn, the `serve` extra), with a
page to try it. This module stays free of FastAPI so that `rnner --help` works without it."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

EXTRA_MISSING = (
    "rnner serve needs the serve extra (FastAPI, uvicorn, prometheus-client): "
    "pip install 'rnner[serve]'"
)


def add_serve_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from .limits import Limits

    d = Limits()
    s = sub.add_parser("serve", help="serve a model over HTTP, with a page to try it")
    s.add_argument("run_dir", nargs="?", help="run directory (default: the shipped model)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    s.add_argument("--port", type=int, default=8000, help="port (8000; 0: any free port)")
    s.add_argument("--device", default="cpu", help="torch device (cpu)")
    s.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads of each worker (0: torch's default, or with --workers N the "
        "CPUs divided among the workers)",
    )
    s.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="model threads tagging batches side by side, each with its own copy of the "
        "model (1; under heavy load on a 2-core machine 2 tag more: docs/serving.md)",
    )
    s.add_argument("--max-body-bytes", type=int, default=d.max_body_bytes)
    s.add_argument(
        "--max-texts",
        type=int,
        default=d.max_texts,
        help=f"texts (or sentences) per request ({d.max_texts})",
    )
    s.add_argument(
        "--max-text-chars",
        type=int,
        default=d.max_text_chars,
        help=f"characters per text ({d.max_text_chars})",
    )
    s.add_argument(
        "--batch-wait-ms",
        type=float,
        default=2.0,
        help="how long a request may wait for batch-mates (2; not at all while recent "
        "batches held one request each)",
    )
    s.add_argument(
        "--batch-tokens",
        type=int,
        default=8192,
        help="tokens tagged in one model call at most (8192)",
    )
    s.add_argument(
        "--drain-seconds",
        type=float,
        default=30.0,
        help="on SIGTERM/Ctrl-C, how long in-flight requests may take (30)",
    )
    s.set_defaults(func=cmd_serve)
    return s


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .app import configure_logging, create_app, log
    except ImportError:
        print(EXTRA_MISSING, file=sys.stderr)
        return 2
    from ..predict import Tagger
    from ..runs import default_model_path
    from .limits import Limits

    threads = args.threads
    if not threads and args.workers > 1:  # N workers each with every CPU would oversubscribe
        threads = max(1, (os.cpu_count() or 1) // args.workers)
    if threads:
        import torch

        torch.set_num_threads(threads)
    run_dir = Path(args.run_dir) if args.run_dir else default_model_path()
    tagger = Tagger.load(run_dir, device=args.device)
    limits = Limits(args.max_body_bytes, args.max_texts, args.max_text_chars)
    app = create_app(
        tagger, run_dir, limits, args.batch_wait_ms, args.batch_tokens, workers=args.workers
    )
    configure_logging()
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=args.drain_seconds,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    # uvicorn drains on SIGINT/SIGTERM and then re-raises the signal to the handler that was
    # there before it; a no-op one makes a drained shutdown exit 0 instead of 130/143.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)

    # Announce the real address (with --port 0 the kernel picks it) once the socket listens.
    async def started() -> None:
        while not server.started:
            await asyncio.sleep(0.01)
        for s in server.servers:
            for sock in s.sockets:
                host, port = sock.getsockname()[:2]
                log.info(
                    "serving %s on http://%s:%d (page: /, API docs: /docs)", run_dir, host, port
                )

    async def main() -> None:
        watcher = asyncio.create_task(started())
        try:
            await server.serve()
        finally:
            watcher.cancel()

    # uvloop when installed (the serve extra brings it): uvicorn picks it only when it makes
    # the loop itself, and here the loop is ours.
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = None
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(main())
    if server.started:
        log.info("stopped after finishing in-flight requests")
        return 0
    print(f"rnner serve: could not listen on {args.host}:{args.port}", file=sys.stderr)
    return 2
