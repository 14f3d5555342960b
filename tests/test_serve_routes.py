"""`POST /v1/ner` is answered by a plain ASGI front (`ner_direct`) for speed, while FastAPI's
route of the same path is what the OpenAPI description shows: both must answer alike."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from rnner.predict import Tagger
from rnner.serve.app import create_app

ROOT = Path(__file__).resolve().parents[1]


async def _post(asgi: Any, body: bytes) -> tuple[int, Any]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/ner",
        "raw_path": b"/v1/ner",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await asgi(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    data = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(data)


@pytest.fixture(scope="module")
def tagger() -> Tagger:
    return Tagger.load(ROOT / "models" / "conll03-en")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"text": "Peter Blackburn visited Brussels on Monday."}', 200),
        (b'{"texts": ["EU rejects German call.", ""]}', 200),
        (b'{"tokens": [["Peter", "Blackburn"]]}', 200),
        (b'{"text": 3}', 422),
        (b"{not json", 400),
    ],
)
def test_fastapi_route_answers_as_the_direct_front(
    tagger: Tagger, body: bytes, status: int
) -> None:
    front = create_app(tagger)
    routes = front.app  # the FastAPI app behind the access log and the direct path

    async def both() -> tuple[tuple[int, Any], tuple[int, Any]]:
        async with routes.router.lifespan_context(routes):
            return await _post(front, body), await _post(routes, body)

    direct, fastapi = asyncio.run(both())
    assert direct == fastapi
    assert direct[0] == status
    if status == 200 and b'"text"' in body:
        labels = [(s["label"], s["text"]) for s in direct[1]["spans"]]
        assert labels == [("PER", "Peter Blackburn"), ("LOC", "Brussels")]
