"""`rnner serve` tested as a user meets it: a real uvicorn process on a free loopback port,
real HTTP (urllib and raw sockets), the shipped model, and real CoNLL-2003 dev sentences.

The browser test (headless Chromium through Selenium) is skipped only when Chromium is not
installed and CI is not set; under CI a missing browser fails the test.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
pytest.importorskip("uvicorn", reason="the serve extra is not installed")

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "conll03-en"
LIMITS = ["--max-body-bytes", "200000", "--max-texts", "300", "--max-text-chars", "5000"]
SENTENCE = "Peter Blackburn of the European Commission visited Brussels on Monday."
# Hand-checked: what the shipped model finds in SENTENCE.
EXPECTED = [
    {
        "text": "Peter Blackburn",
        "label": "PER",
        "start": 0,
        "end": 15,
        "token_start": 0,
        "token_end": 2,
    },
    {
        "text": "European Commission",
        "label": "ORG",
        "start": 23,
        "end": 42,
        "token_start": 4,
        "token_end": 6,
    },
    {"text": "Brussels", "label": "LOC", "start": 51, "end": 59, "token_start": 7, "token_end": 8},
]


class Server:
    """`rnner serve` in a subprocess; its stderr is read on a thread (so the pipe never fills)
    and kept in `lines`."""

    def __init__(self, *args: str):
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rnner.cli",
                "serve",
                str(MODEL),
                "--port",
                "0",
                "--threads",
                "1",
                *args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self.port = 0
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line.rstrip("\n"))
                m = re.search(r"serving .* on http://127\.0\.0\.1:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
                    ready.set()
            ready.set()

        self.reader = threading.Thread(target=read, daemon=True)
        self.reader.start()
        if not ready.wait(180) or not self.port:
            self.stop()
            pytest.fail("rnner serve did not start:\n" + "\n".join(self.lines))
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.reader.join(10)
        return self.proc.returncode


def request(
    url: str,
    body: bytes | None = None,
    method: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict | str]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            status, raw, ctype = r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        status, raw, ctype = e.code, e.read(), e.headers.get("content-type", "")
    text = raw.decode("utf-8")
    return status, json.loads(text) if ctype.startswith("application/json") else text


def ner(server: Server, payload: object) -> dict:
    status, body = request(
        server.url + "/v1/ner",
        json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert status == 200, body
    assert isinstance(body, dict)
    return body


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server(*LIMITS)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def dev_texts(conll_dir: Path) -> list[str]:
    """The first 150 sentences of CoNLL-2003 dev, tokens joined by spaces."""
    texts, cur = [], []
    for line in (conll_dir / "dev.txt").read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("-DOCSTART-"):
            if cur:
                texts.append(" ".join(cur))
                cur = []
            continue
        cur.append(line.split()[0])
    return texts[:150]


def test_sentence_gives_the_hand_checked_spans(server: Server) -> None:
    body = ner(server, {"text": SENTENCE})
    assert body["spans"] == EXPECTED
    assert body["tokens"] == 11
    # one log line per request: method, path, status, tokens, milliseconds
    deadline = time.monotonic() + 5
    while not any(" POST /v1/ner 200 tokens=11 ms=" in line for line in server.lines):
        assert time.monotonic() < deadline, server.lines[-5:]
        time.sleep(0.05)


def test_spans_are_those_of_rnner_predict_jsonl(
    server: Server, dev_texts: list[str], tmp_path: Path
) -> None:
    source = tmp_path / "dev.txt"
    source.write_text("\n".join(dev_texts) + "\n", encoding="utf-8")
    out = tmp_path / "dev.jsonl"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "rnner.cli",
            "predict",
            str(MODEL),
            "--input",
            str(source),
            "--output",
            str(out),
            "--format",
            "jsonl",
            "--quiet",
            "--threads",
            "1",
        ],
        check=True,
    )
    cli = [json.loads(line)["spans"] for line in out.read_text(encoding="utf-8").splitlines()]
    assert sum(len(s) for s in cli) > 150  # real sentences with real entities
    served = [r["spans"] for r in ner(server, {"texts": dev_texts})["results"]]
    assert served == cli
    # and one text at a time
    for i in (0, 3, 17, 42):
        assert ner(server, {"text": dev_texts[i]})["spans"] == cli[i]


def test_pretokenised_sentences(server: Server) -> None:
    tokens = [
        ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."],
        ["Peter", "Blackburn"],
    ]
    results = ner(server, {"tokens": tokens})["results"]
    assert results[0]["spans"] == [
        {"text": "EU", "label": "ORG", "start": 0, "end": 2, "token_start": 0, "token_end": 1},
        {
            "text": "German",
            "label": "MISC",
            "start": 11,
            "end": 17,
            "token_start": 2,
            "token_end": 3,
        },
        {
            "text": "British",
            "label": "MISC",
            "start": 34,
            "end": 41,
            "token_start": 6,
            "token_end": 7,
        },
    ]
    assert results[1]["spans"] == [
        {
            "text": "Peter Blackburn",
            "label": "PER",
            "start": 0,
            "end": 15,
            "token_start": 0,
            "token_end": 2,
        }
    ]


def _batch_sizes(server: Server) -> tuple[float, float]:
    """(batches, batches that held one request) from /metrics."""
    _, text = request(server.url + "/metrics")
    assert isinstance(text, str)
    count = float(re.search(r"^rnner_batch_requests_count (\S+)$", text, re.M).group(1))
    ones = float(
        re.search(r'^rnner_batch_requests_bucket\{le="1\.0"\} (\S+)$', text, re.M).group(1)
    )
    return count, ones


def test_spans_do_not_depend_on_batch_mates(server: Server, dev_texts: list[str]) -> None:
    texts = dev_texts[:60]
    alone = [ner(server, {"text": t})["spans"] for t in texts]
    batches0, ones0 = _batch_sizes(server)
    jobs = [(i, t) for _ in range(4) for i, t in enumerate(texts)]
    random.Random(0).shuffle(jobs)
    with ThreadPoolExecutor(32) as pool:
        loaded = list(pool.map(lambda job: (job[0], ner(server, {"text": job[1]})["spans"]), jobs))
    for i, spans in loaded:
        assert spans == alone[i], texts[i]
    batches1, ones1 = _batch_sizes(server)
    # the load really was batched: fewer model calls than requests
    assert batches1 - batches0 < len(jobs)
    assert (batches1 - batches0) - (ones1 - ones0) > 0


BAD = [
    (b"", 400, "empty body"),
    (b"   \n", 400, "empty body"),
    (b'{"text": "Peter', 400, "not valid JSON"),
    (b"\xff\xfe{}", 400, "not UTF-8 (byte 0)"),
    (b'{"text": "caf\xe9"}', 400, "not UTF-8 (byte 13)"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "not valid JSON"),
    (b'{"text": 1' + b"0" * 5000 + b"}", 400, "not valid JSON"),
    (b'["Peter"]', 422, "must be a JSON object, not a list"),
    (b'{"text": 3}', 422, "text must be a string, not a number"),
    (b'{"text": null}', 422, "text must be a string, not null"),
    (b'{"texts": "Peter"}', 422, "texts must be a list, not a string"),
    (b'{"texts": []}', 422, "texts is empty"),
    (b'{"texts": ["a", {"b": 1}]}', 422, "texts[1] must be a string, not an object"),
    (b'{"tokens": [["Peter", 2]]}', 422, "tokens[0][1] must be a non-blank string"),
    (b'{"tokens": [["Peter", " "]]}', 422, "tokens[0][1] must be a non-blank string, not ' '"),
    (b'{"tokens": ["Peter"]}', 422, "tokens[0] must be a list of strings, not a string"),
    (b'{"text": "a", "texts": ["b"]}', 422, "exactly one of text, texts, tokens (got text, "),
    (b"{}", 422, "exactly one of text, texts, tokens"),
    (b'{"txt": "Peter"}', 422, "unknown field 'txt'"),
    (b'{"text": "\\ud800 Peter"}', 422, "text is not valid Unicode (a lone surrogate"),
    (json.dumps({"text": "x" * 5001}).encode(), 413, "text has 5001 characters; the limit is 5000"),
    (json.dumps({"texts": ["a"] * 301}).encode(), 413, "texts holds 301 items; the limit is 300"),
    (
        json.dumps({"texts": ["Peter . " * 600] * 50}).encode(),
        413,
        "body of 240211 bytes exceeds the limit of 200000 bytes",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "message"), BAD, ids=[f"{i}-{m[:24]}" for i, (_, _, m) in enumerate(BAD)]
)
def test_bad_input_gets_a_4xx_naming_it(
    server: Server, body: bytes, status: int, message: str
) -> None:
    got, reply = request(
        server.url + "/v1/ner", body, method="POST", headers={"Content-Type": "application/json"}
    )
    assert got == status, reply
    assert isinstance(reply, dict)
    assert message in reply["error"]["message"], reply
    # and the next request is served normally
    assert ner(server, {"text": SENTENCE})["spans"] == EXPECTED


def raw_http(port: int, head: bytes, parts: list[bytes]) -> bytes:
    """Send a request by hand (a chunked or slow body), return the whole response."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head)
        for p in parts:
            sock.sendall(p)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_chunked_body_past_the_limit_is_refused(server: Server) -> None:
    chunk = b"x" * 65536
    head = (
        b"POST /v1/ner HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    parts = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * 4 + [b"0\r\n\r\n"]
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        reply = raw_http(server.port, head, parts)
        assert reply.startswith(b"HTTP/1.1 413"), reply[:200]
        assert b"body exceeds the limit of 200000 bytes" in reply
    assert ner(server, {"text": SENTENCE})["spans"] == EXPECTED


def test_health_model_metrics_docs(server: Server) -> None:
    assert request(server.url + "/health") == (200, {"status": "ok"})
    status, model = request(server.url + "/v1/model")
    assert status == 200 and isinstance(model, dict)
    assert model["labels"] == ["LOC", "MISC", "ORG", "PER"]
    assert model["scheme"] == "IOB2"
    assert model["config"]["model"]["hidden_size"] == 200
    assert model["metrics"]["dev"]["entity"]["f1"] > 0.9
    # the shipped model is two, routed by case: the rule and both models are described
    router = model["router"]
    assert (router["min_share"], router["max_lower_sentences"], router["min_sentences"]) == (
        0.02,
        0.2,
        2,
    )
    assert set(router["models"]) == {"cased", "caseless"}
    assert router["models"]["caseless"]["config"]["model"]["case_shares"] is True
    assert router["models"]["cased"]["metrics"] == model["metrics"]
    assert router["models"]["caseless"]["metrics"]["dev"]["entity"]["f1"] > 0.9
    assert model["limits"] == {"max_body_bytes": 200000, "max_texts": 300, "max_text_chars": 5000}
    status, spec = request(server.url + "/openapi.json")
    assert status == 200 and isinstance(spec, dict)
    assert "requestBody" in spec["paths"]["/v1/ner"]["post"]
    status, docs = request(server.url + "/docs")
    assert status == 200 and "swagger" in str(docs).lower()
    status, missing = request(server.url + "/nowhere")
    assert status == 404 and missing["error"]["type"] == "not_found"
    status, wrong = request(server.url + "/v1/ner")
    assert status == 405 and wrong["error"]["type"] == "method_not_allowed"
    ner(server, {"text": SENTENCE})
    _, text = request(server.url + "/metrics")
    assert isinstance(text, str)
    m = re.search(
        r'^rnner_requests_total\{method="POST",path="/v1/ner",status="200"\} (\S+)$', text, re.M
    )
    assert m and float(m.group(1)) >= 1
    assert re.search(r"^rnner_tokens_total (\S+)$", text, re.M)
    assert 'rnner_request_seconds_bucket{le="0.001",path="/v1/ner"}' in text


def test_sigterm_drains_in_flight_requests_then_exits_0() -> None:
    s = Server()
    try:
        body = json.dumps({"text": SENTENCE}).encode()
        head = (
            b"POST /v1/ner HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)
        )
        with socket.create_connection(("127.0.0.1", s.port), timeout=60) as sock:
            sock.sendall(head + body[:10])  # the request is now in flight...
            time.sleep(0.5)
            s.proc.send_signal(signal.SIGTERM)  # ...when the server is told to stop
            time.sleep(1.0)
            assert s.proc.poll() is None, "exited with a request in flight"
            sock.sendall(body[10:])
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        reply = b"".join(chunks)
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["spans"] == EXPECTED
        assert s.proc.wait(60) == 0, s.lines
        assert any("stopped after finishing in-flight requests" in x for x in s.lines)
        with pytest.raises(OSError):  # and it no longer listens
            socket.create_connection(("127.0.0.1", s.port), timeout=5).close()
    finally:
        s.stop()


# --- the page, in a real browser ----------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _browser_or_skip() -> tuple[str, str]:
    missing = [n for n, p in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if not p]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium")
    if missing:
        why = f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the browser test: {why}")
        pytest.skip(why)
    assert CHROMIUM and CHROMEDRIVER
    return CHROMIUM, CHROMEDRIVER


def test_page_highlights_entities_in_a_real_browser(server: Server, tmp_path: Path) -> None:
    chromium, chromedriver = _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-dev-shm-usage",
        "--window-size=1000,760",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    try:
        driver.get(server.url + "/")
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#legend span")) == 4)
        legend = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#legend span")]
        assert legend == ["LOC", "MISC", "ORG", "PER"]
        box = driver.find_element(By.ID, "text")
        box.clear()
        box.send_keys(SENTENCE)
        driver.find_element(By.ID, "tag").click()
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#result mark.entity")))
        marks = driver.find_elements(By.CSS_SELECTOR, "#result mark.entity")
        found = [
            (
                m.find_element(By.CSS_SELECTOR, ".text").text,
                m.get_attribute("data-label"),
                int(m.get_attribute("data-start")),
            )
            for m in marks
        ]
        assert found == [(s["text"], s["label"], s["start"]) for s in EXPECTED]
        # the whole text is shown back, entities in place
        result = driver.find_element(By.ID, "result")
        assert (
            driver.execute_script(
                "return Array.from(arguments[0].childNodes).map(n => n.nodeType === 3 ? "
                "n.textContent : n.querySelector('.text').textContent).join('')",
                result,
            )
            == SENTENCE
        )
        # each type in its own colour, the legend's
        colours = {
            m.get_attribute("data-label"): m.value_of_css_property("background-color")
            for m in marks
        }
        assert len(set(colours.values())) == 3
        for e in driver.find_elements(By.CSS_SELECTOR, "#legend span"):
            if e.text in colours:
                assert e.value_of_css_property("background-color") == colours[e.text]
        assert "3 entities, 11 tokens" in driver.find_element(By.ID, "status").text
        # a bad request is shown as an error, and the page keeps working
        box.clear()
        box.send_keys("x" * 5001)
        driver.find_element(By.ID, "tag").click()
        wait.until(lambda d: d.find_element(By.ID, "error").text)
        assert "limit is 5000" in driver.find_element(By.ID, "error").text
        shot = os.environ.get("RNNER_SCREENSHOT")
        if shot:  # docs/serve_page.png comes from here (see docs/serving.md)
            box.clear()
            box.send_keys(SENTENCE + " EU rejects German call to boycott British lamb.")
            driver.find_element(By.ID, "tag").click()
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#result mark")) > 3)
            driver.save_screenshot(shot)
    finally:
        driver.quit()
