"""The HTTP API: `POST /v1/ner`, `GET /health`, `GET /v1/model`, `GET /metrics`, `GET /` (a page
to try the model) and the OpenAPI docs at `/docs`.

Request bodies are read and checked here, not by FastAPI's validation, so that every bad input
gets one clear JSON error (`{"error": {"type": ..., "message": ...}}`) that names the problem
and the field, and so that no body is ever read past the size limit. Nothing a client sends is
evaluated or unpickled: the body is UTF-8 JSON or it is refused.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import MutableMapping
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..predict import RoutedTagger, Tagger
from ..routing import CASED
from .batcher import TEXTS, TOKENS, MicroBatcher
from .limits import Limits

log = logging.getLogger("rnner.serve")


class BadRequest(Exception):
    """A client error: HTTP status, a short type and a message naming the problem."""

    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


# --- documentation models (the body itself is checked by `parse_request`) -------------------


class NERRequest(BaseModel):
    """Exactly one of the three fields."""

    text: str | None = Field(
        None,
        description="one raw text (tokenised and split here)",
        examples=["Peter Blackburn visited Brussels on Monday."],
    )
    texts: list[str] | None = Field(None, description="several raw texts, each on its own")
    tokens: list[list[str]] | None = Field(
        None, description="pre-tokenised sentences of one document"
    )


class SpanModel(BaseModel):
    text: str
    label: str
    start: int = Field(
        description="character offset (into the text, or into the "
        "sentence's tokens joined by single spaces)"
    )
    end: int
    token_start: int
    token_end: int


class Result(BaseModel):
    spans: list[SpanModel]


class NERResponse(BaseModel):
    spans: list[SpanModel] | None = Field(None, description="for `text`")
    results: list[Result] | None = Field(
        None, description="for `texts` (one per text) and `tokens` (one per sentence)"
    )
    tokens: int = Field(description="tokens tagged")


class ErrorBody(BaseModel):
    type: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


# --- request parsing ---------------------------------------------------------------------------


async def receive_body(scope: MutableMapping[str, Any], receive: Any, limit: int) -> bytes:
    """The body read from ASGI `receive`, refused with 413 as soon as it is known to exceed
    `limit` bytes (by its Content-Length before reading, or while reading a chunked body)."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                size = int(value)
            except ValueError:
                raise BadRequest(400, "bad_header", "Content-Length is not a number") from None
            if size > limit:
                raise BadRequest(
                    413,
                    "body_too_large",
                    f"body of {size} bytes exceeds the limit of {limit} bytes",
                )
    chunks, total = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # http.disconnect: nobody reads the answer
            raise BadRequest(400, "incomplete_body", "the client left before the body ended")
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise BadRequest(413, "body_too_large", f"body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_request(body: bytes, limits: Limits) -> tuple[str, list[Any], bool]:
    """(kind, items, single) from a raw body; raises BadRequest naming what is wrong."""
    if not body.strip():
        raise BadRequest(
            400, "empty_body", 'empty body; send JSON such as {"text": "Peter visited Paris."}'
        )
    try:
        decoded = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadRequest(400, "not_utf8", f"body is not UTF-8 (byte {e.start})") from None
    try:
        data = json.loads(decoded)
    except RecursionError:
        raise BadRequest(400, "invalid_json", "body is not valid JSON: nested too deeply") from None
    except ValueError as e:
        raise BadRequest(400, "invalid_json", f"body is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BadRequest(
            422, "invalid_request", f"body must be a JSON object, not {_json_type(data)}"
        )
    given = [k for k in ("text", "texts", "tokens") if k in data]
    unknown = sorted(set(data) - {"text", "texts", "tokens"})
    if unknown:
        raise BadRequest(
            422, "invalid_request", f"unknown field {unknown[0]!r}; give one of text, texts, tokens"
        )
    if len(given) != 1:
        raise BadRequest(
            422,
            "invalid_request",
            "give exactly one of text, texts, tokens"
            + (f" (got {', '.join(given)})" if given else ""),
        )
    field = given[0]
    value = data[field]
    if field == "text":
        _check_text(value, "text", limits)
        return TEXTS, [value], True
    if not isinstance(value, list):
        raise BadRequest(422, "invalid_request", f"{field} must be a list, not {_json_type(value)}")
    if not value:
        raise BadRequest(422, "invalid_request", f"{field} is empty")
    if len(value) > limits.max_texts:
        raise BadRequest(
            413,
            "too_many_texts",
            f"{field} holds {len(value)} items; the limit is {limits.max_texts}",
        )
    if field == "texts":
        for i, text in enumerate(value):
            _check_text(text, f"texts[{i}]", limits)
        return TEXTS, value, False
    for i, sent in enumerate(value):
        where = f"tokens[{i}]"
        if not isinstance(sent, list):
            raise BadRequest(
                422, "invalid_request", f"{where} must be a list of strings, not {_json_type(sent)}"
            )
        for j, tok in enumerate(sent):
            if not isinstance(tok, str) or not tok or tok.isspace():
                what = repr(tok) if isinstance(tok, str) else _json_type(tok)
                raise BadRequest(
                    422, "invalid_request", f"{where}[{j}] must be a non-blank string, not {what}"
                )
        _check_text(" ".join(sent), where, limits)
    return TOKENS, value, False


def _check_text(value: Any, where: str, limits: Limits) -> None:
    if not isinstance(value, str):
        raise BadRequest(
            422, "invalid_request", f"{where} must be a string, not {_json_type(value)}"
        )
    if len(value) > limits.max_text_chars:
        raise BadRequest(
            413,
            "text_too_long",
            f"{where} has {len(value)} characters; the limit is {limits.max_text_chars}",
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise BadRequest(
            422,
            "invalid_request",
            f"{where} is not valid Unicode (a lone surrogate at character {e.start})",
        ) from None


def _json_type(value: Any) -> str:
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def _error_body(kind: str, message: str) -> bytes:
    return json.dumps({"error": {"type": kind, "message": message}}, ensure_ascii=False).encode()


def _error(status: int, kind: str, message: str) -> Response:
    return Response(_error_body(kind, message), status_code=status, media_type="application/json")


async def send_json(send: Any, status: int, body: bytes) -> None:
    """A JSON answer straight through ASGI (what Starlette's Response sends, less its work)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-length", str(len(body)).encode()),
                (b"content-type", b"application/json"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --- the app -----------------------------------------------------------------------------------


class Metrics:
    """Prometheus metrics in a registry of the app's own (several apps can share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rnner_requests_total",
            "HTTP requests",
            ["method", "path", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rnner_request_seconds",
            "HTTP request latency",
            ["path"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.tokens = Counter("rnner_tokens_total", "tokens tagged", registry=self.registry)
        self.batch_requests = Histogram(
            "rnner_batch_requests",
            "requests tagged in one model call",
            registry=self.registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self.batch_seconds = Histogram(
            "rnner_batch_seconds",
            "model time of one batch",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )

    def batch(self, requests: int, tokens: int, seconds: float) -> None:
        self.batch_requests.observe(requests)
        self.batch_seconds.observe(seconds)
        self.tokens.inc(tokens)


class AccessLog:
    """ASGI middleware: one log line per request (method, path, status, tokens, ms), and the
    request counter and latency histogram. Plain ASGI, not BaseHTTPMiddleware: cheaper.

    `direct` maps (method, path) to plain ASGI apps served here without going through
    FastAPI: `POST /v1/ner` is the one path under load, and FastAPI's middleware, routing
    and Response classes cost as much event-loop time per request as the rest of it."""

    PATHS = {"/", "/health", "/metrics", "/v1/ner", "/v1/model", "/docs", "/openapi.json"}

    def __init__(self, app: Any, metrics: Metrics, direct: dict[tuple[str, str], Any]):
        self.app, self.metrics, self.direct = app, metrics, direct

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        app = self.direct.get((scope["method"], scope["path"]), self.app)
        try:
            await app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - start
            path = scope["path"] if scope["path"] in self.PATHS else "other"
            self.metrics.requests.labels(scope["method"], path, str(status)).inc()
            self.metrics.latency.labels(path).observe(seconds)
            tokens = scope.get("state", {}).get("tokens", 0)
            log.info(
                "%s %s %d tokens=%d ms=%.1f",
                scope["method"],
                scope["path"],
                status,
                tokens,
                1000 * seconds,
            )


def model_info(tagger: Tagger, run_dir: Path | None) -> dict[str, Any]:
    """What `GET /v1/model` answers. For a routed model (two models picked by the text's case)
    the top-level config and metrics are its cased model's, and `router` gives the rule and
    each model's config and metrics."""
    import platform

    import torch

    def metrics(d: Path | None) -> Any:
        if d is not None and (d / "metrics.json").is_file():
            return json.loads((d / "metrics.json").read_text(encoding="utf-8"))
        return None

    routed = isinstance(tagger, RoutedTagger)
    labels = sorted({t.split("-", 1)[1] for t in tagger.vocabs.tags.itos if "-" in t})
    info: dict[str, Any] = {
        "name": run_dir.name if run_dir is not None else None,
        "labels": labels,
        "scheme": tagger.output_scheme,
        "training_scheme": tagger.scheme,
        "config": tagger.cfg.to_dict(),
        "metrics": metrics(run_dir / CASED if routed and run_dir is not None else run_dir),
        "trained_with": tagger.meta.get("versions"),
        "versions": {
            "rnner": __version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    if isinstance(tagger, RoutedTagger):  # router.json as written (rule, thresholds, sources)
        info["router"] = {
            **{k: v for k, v in tagger.router.items() if k not in ("format", "version")},
            "models": {
                name: {
                    "config": t.cfg.to_dict(),
                    "metrics": metrics(run_dir / name if run_dir is not None else None),
                }
                for name, t in tagger.taggers.items()
            },
        }
    return info


def page() -> str:
    return resources.files("rnner.serve").joinpath("static/index.html").read_text("utf-8")


def create_app(
    tagger: Tagger,
    run_dir: str | Path | None = None,
    limits: Limits | None = None,
    max_wait_ms: float = 2.0,
    max_batch_tokens: int = 8192,
    workers: int = 1,
) -> Any:
    """The ASGI app serving `tagger`. The micro-batcher's threads start with the app's
    lifespan and are stopped (after finishing its queue) when the server shuts down."""
    import contextlib

    limits = limits or Limits()
    metrics = Metrics()
    info = model_info(tagger, Path(run_dir) if run_dir is not None else None)
    state: dict[str, MicroBatcher] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        state["batcher"] = MicroBatcher(
            tagger, max_wait_ms, max_batch_tokens, metrics.batch, workers=workers
        )
        try:
            yield
        finally:
            state.pop("batcher").close()

    app = FastAPI(
        title="rnner",
        version=__version__,
        lifespan=lifespan,
        description="Named entity recognition with a BiLSTM-CNN-CRF model. "
        f"Limits: body {limits.max_body_bytes} bytes, {limits.max_texts} texts "
        f"(or sentences) per request, {limits.max_text_chars} characters per text.",
    )
    app.state.limits = limits
    html = page()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, kind, f"{request.method} {request.url.path}: {exc.detail}")

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return _error(422, "invalid_request", str(exc.errors()[:1]))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(html)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/model")
    async def model() -> dict[str, Any]:
        """Labels, tag scheme, training config, dev/test scores and versions."""
        return {**info, "limits": asdict(limits)}

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/v1/ner",
        responses={
            200: {"model": NERResponse},
            400: {"model": ErrorResponse},
            413: {"model": ErrorResponse},
            422: {"model": ErrorResponse},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": NERRequest.model_json_schema()}},
            }
        },
    )
    async def ner(request: Request) -> Response:
        """Entity spans for `{"text": ...}`, `{"texts": [...]}` or `{"tokens": [[...]]}`:
        the same span objects as `rnner predict --format jsonl`."""
        # served by `ner_direct` below; this route is what the OpenAPI description shows
        status, body = await answer(request.scope, request.receive)
        return Response(body, status_code=status, media_type="application/json")

    async def answer(scope: MutableMapping[str, Any], receive: Any) -> tuple[int, bytes]:
        try:
            kind, items, single = parse_request(
                await receive_body(scope, receive, limits.max_body_bytes), limits
            )
        except BadRequest as e:
            return e.status, _error_body(e.kind, e.message)
        records, tokens = await state["batcher"].submit(kind, items)
        scope.setdefault("state", {})["tokens"] = tokens
        if single:
            out: dict[str, Any] = {"spans": records[0], "tokens": tokens}
        else:
            out = {"results": [{"spans": r} for r in records], "tokens": tokens}
        return 200, json.dumps(out, ensure_ascii=False).encode()

    async def ner_direct(scope: dict, receive: Any, send: Any) -> None:
        status, body = await answer(scope, receive)
        await send_json(send, status, body)

    return AccessLog(app, metrics, {("POST", "/v1/ner"): ner_direct})


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
