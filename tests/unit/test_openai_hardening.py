"""Issue 24 findings 2, 3 and 16: `serve-openai` (a real HTTP server in process, a fake engine) under
bad fields, slow and silent clients and load; and the `openai` backend against a misbehaving server.
RELIABILITY.md lists which test pins which finding."""

import http.client
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from completer.engines.contract import (
    GenerationRequest,
    GenerationStats,
    GenerationStream,
    StopRules,
    TokenDelta,
)
from completer.engines.openai_compat import OpenAIEngine
from completer.serving import openai_server
from completer.serving.openai_server import CompletionHandler, CompletionServer
from tests.conftest import FIXTURE_MODEL, until


class FakeEngine:
    """Holds its lock while a generation runs, as the torch engine does (one model, one slot)."""
    name, device, max_seq, can_heal, can_score = "fake", "cpu", 256, False, False

    def __init__(self, deltas=3, text="ab", gate=None, cached=7):
        self.tokenizer = SimpleNamespace(vocab_size=1000, encode=lambda text: [1] * max(1, len(text) // 4))
        self.lock = threading.Lock()
        self.deltas, self.text, self.gate, self.cached = deltas, text, gate, cached
        self.requests: list[GenerationRequest] = []

    def generate(self, request, cancel=None):
        self.requests.append(request)
        stats = GenerationStats(prompt_tokens=len(request.prompt_ids), cached_tokens=self.cached)

        def run():
            with self.lock:
                if self.gate is not None:
                    self.gate.wait(30)
                for _ in range(self.deltas):
                    if cancel is not None and cancel.is_set():
                        stats.finish_reason = "cancelled"
                        return
                    stats.decode_tokens += 1
                    yield TokenDelta([1], self.text)
                stats.finish_reason = "max_tokens"
        return GenerationStream(run(), stats)

    def describe(self):
        return {"backend": "fake", "model_dir": ""}


@pytest.fixture
def http_server():
    servers = []

    def start(engine=None, **kw) -> tuple[CompletionServer, int]:
        server = CompletionServer(("127.0.0.1", 0), engine or FakeEngine(), "fake", **kw)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(server)
        return server, server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def post(port, body, timeout=10.0) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v1/completions", body=json.dumps(body), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


# -- finding 2: fields are checked, work is capped, slow clients and load are bounded ---------------

BASE = {"prompt": [1, 2, 3], "max_tokens": 4}


@pytest.mark.parametrize("extra, field", [
    ({"seed": "x" * 100}, "seed"), ({"seed": [1, 2]}, "seed"), ({"seed": -1}, "seed"), ({"seed": True}, "seed"),
    ({"seed": 2**64}, "seed"), ({"max_tokens": 10**9}, "max_tokens"), ({"max_tokens": "4"}, "max_tokens"),
    ({"temperature": "1"}, "temperature"), ({"temperature": float("nan")}, "temperature"),
    ({"temperature": 1e9}, "temperature"), ({"top_p": 0}, "top_p"), ({"stop": ["x"] * 100}, "stop"),
    ({"stop": 5}, "stop"), ({"stop_token_ids": [10**9]}, "stop_token_ids"), ({"stream": "yes"}, "stream"),
    ({"stream_options": []}, "stream_options"), ({"n": "1"}, "n=1"), ({"model": ["x"]}, "model"),
    ({"prompt": "x" * (getattr(openai_server, "MAX_PROMPT_CHARS", 1 << 20) + 1)}, "characters"),
])
def test_bad_fields_are_refused_with_a_message(http_server, extra, field):
    server, port = http_server()
    status, answer = post(port, {**BASE, **extra})
    assert status == 400 and field in answer["error"]["message"], answer
    assert server.engine.requests == []


def test_each_request_has_a_deadline_and_a_token_cap(http_server):
    server, port = http_server()
    t0 = time.monotonic()
    status, _ = post(port, {**BASE, "max_tokens": openai_server.MAX_NEW_TOKENS})
    assert status == 200
    request = server.engine.requests[0]
    assert request.deadline_s is not None and request.deadline_s <= t0 + openai_server.REQUEST_DEADLINE_S + 1
    assert post(port, {**BASE, "max_tokens": openai_server.MAX_NEW_TOKENS + 1})[0] == 400


def test_a_client_that_stops_reading_does_not_stall_the_others(http_server, monkeypatch):
    monkeypatch.setattr(openai_server, "STALL_S", 0.5, raising=False)
    server, port = http_server(FakeEngine(deltas=2000, text="x" * 16384))  # 32 MB of answer
    stalled = socket.create_connection(("127.0.0.1", port))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    body = json.dumps({**BASE, "max_tokens": 1000, "stream": True}).encode()
    stalled.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # and never reads
    time.sleep(0.3)
    server.engine.deltas = 2
    result = []
    thread = threading.Thread(target=lambda: result.append(post(port, BASE, timeout=30)), daemon=True)
    t0 = time.monotonic()
    thread.start()
    thread.join(15)
    stalled.close()
    assert result and result[0][0] == 200, "the engine stayed busy writing to a client that reads nothing"
    assert time.monotonic() - t0 < 10


def test_a_silent_connection_is_dropped(http_server, monkeypatch):
    assert CompletionHandler.timeout is not None and CompletionHandler.timeout <= 60  # reads and writes
    monkeypatch.setattr(CompletionHandler, "timeout", 0.5)
    _, port = http_server()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")  # and nothing more
        sock.settimeout(10)
        t0 = time.monotonic()
        assert sock.recv(1024) == b""  # closed by the server
        assert time.monotonic() - t0 < 5


def test_busy_is_answered_429(http_server, monkeypatch):
    monkeypatch.setattr(openai_server, "MAX_ACTIVE", 1, raising=False)
    monkeypatch.setattr(openai_server, "MAX_CONNECTIONS", 3, raising=False)
    gate = threading.Event()
    server, port = http_server(FakeEngine(gate=gate))
    first = threading.Thread(target=post, args=(port, BASE), daemon=True)
    first.start()
    until(lambda: server.engine.requests)  # the first holds the one slot
    status, answer = post(port, BASE)
    assert status == 429 and "requests running" in answer["error"]["message"]
    until(lambda: server.connections == 1)  # that one's thread has seen it hang up
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]
    until(lambda: server.connections == 3)
    status, answer = post(port, BASE)  # a fourth connection
    assert status == 429 and "connections" in answer["error"]["message"]
    for sock in idle:
        sock.close()
    gate.set()
    first.join(10)
    until(lambda: server.connections == 0)
    assert post(port, BASE)[0] == 200


def test_a_refused_client_still_sending_reads_its_429(http_server, monkeypatch):
    """The 429 goes out before the request is read; a client that sends after it must still get it,
    not a reset (closing a socket with data still arriving resets the connection)."""
    monkeypatch.setattr(openai_server, "MAX_CONNECTIONS", 0, raising=False)
    _, port = http_server()
    body = json.dumps(BASE).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as late:
        time.sleep(0.3)  # the server has answered and closed its side by now
        late.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        time.sleep(0.1)
        late.sendall(body)
        answer = b""
        while chunk := late.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 429") and b"busy" in answer


# -- finding 3: no cached-token report across users ------------------------------------------------

def test_cached_tokens_are_not_reported_unless_the_server_has_one_user(http_server):
    _, port = http_server()
    status, answer = post(port, BASE)
    assert status == 200 and "prompt_tokens_details" not in answer["usage"]
    _, port = http_server(report_cached=True)
    assert post(port, BASE)[1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 7}


# -- finding 16: the openai backend against a server that misbehaves --------------------------------

class FakeAPI(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    mode = "ok"
    sent = 0
    headers_seen: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        data = b"[]" if FakeAPI.mode == "models-list" else json.dumps({"data": [{"id": "m"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _pour(self, total):
        """Write `total` bytes of filler, counting what the client takes; stop when it hangs up."""
        piece = b"x" * 65536
        try:
            while FakeAPI.sent < total:
                self.wfile.write(piece)
                FakeAPI.sent += len(piece)
        except OSError:
            pass

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        FakeAPI.headers_seen.append(dict(self.headers))
        if FakeAPI.mode == "error-body":
            self.send_response(400)
            self.send_header("Content-Length", str(32 << 20))
            self.end_headers()
            return self._pour(32 << 20)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        if FakeAPI.mode == "long-line":
            self.wfile.write(b"data: ")
            return self._pour(32 << 20)
        events = {"not-object": [b"[1, 2]"], "choice-not-object": [b'{"choices": ["x"]}'],
                  "ok": [json.dumps({"choices": [{"text": "ab", "finish_reason": "length"}]}).encode()]}[FakeAPI.mode]
        for event in events + [b"[DONE]"]:
            self.wfile.write(b"data: %s\n\n" % event)


@pytest.fixture
def api(monkeypatch):
    monkeypatch.delenv("COMPLETER_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    FakeAPI.mode, FakeAPI.sent, FakeAPI.headers_seen = "ok", 0, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeAPI)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _ask(engine, session_key="file:///home/alice/secret-project/billing.py"):
    stream = engine.generate(GenerationRequest((1, 2, 3), max_new_tokens=4, stop=StopRules(max_lines=0),
                                               session_key=session_key, deadline_s=time.monotonic() + 20))
    return "".join(d.text for d in stream), stream.stats.finish_reason


@pytest.mark.parametrize("mode", ["long-line", "error-body"])
def test_a_huge_line_or_error_body_is_not_read_to_its_end(api, mode):
    engine = OpenAIEngine(FIXTURE_MODEL, server_url=api, retries=0, read_timeout_s=20)
    FakeAPI.mode = mode
    try:
        if mode == "long-line":
            assert _ask(engine) == ("", "unavailable")
        else:
            with pytest.raises(Exception, match="400"):
                _ask(engine)
    finally:
        engine.close()
    time.sleep(0.2)
    assert FakeAPI.sent < 8 << 20, f"the client read {FakeAPI.sent >> 20} MB"


@pytest.mark.parametrize("mode", ["not-object", "choice-not-object"])
def test_json_that_is_not_an_object_is_a_broken_server_not_a_traceback(api, mode):
    engine = OpenAIEngine(FIXTURE_MODEL, server_url=api, retries=0)
    FakeAPI.mode = mode
    assert _ask(engine) == ("", "unavailable")
    assert engine.describe()["status"].startswith("down")
    engine.close()
    FakeAPI.mode = "models-list"
    engine = OpenAIEngine(FIXTURE_MODEL, server_url=api)  # /models answering a list: no crash either
    assert engine.describe()["status"].startswith("down")


def test_the_session_header_carries_a_hash_not_the_file_path(api):
    engine = OpenAIEngine(FIXTURE_MODEL, server_url=api)
    assert _ask(engine)[0] == "ab"
    _ask(engine)
    _ask(engine, "file:///other.py")
    sent = [h["X-Session-Id"] for h in FakeAPI.headers_seen]
    assert sent[0] == sent[1] != sent[2] and len(sent[0]) == 32
    assert "alice" not in sent[0] and "billing" not in sent[0]
    engine.close()


def test_an_api_key_over_plain_http_is_warned_about_once(monkeypatch, caplog):
    monkeypatch.setenv("COMPLETER_API_KEY", "s3cret")
    monkeypatch.setattr(OpenAIEngine, "_probe", lambda self: None)
    caplog.set_level(logging.WARNING, "completer.engines.openai_compat")
    for url in ("http://192.0.2.7:8000/v1", "http://192.0.2.7:8000/v1", "http://127.0.0.1:8000/v1",
                "http://localhost:8000/v1", "https://192.0.2.8/v1"):
        engine = OpenAIEngine(FIXTURE_MODEL, server_url=url)
    warnings = [r.getMessage() for r in caplog.records if "plain http" in r.getMessage()]
    assert len(warnings) == 1 and "192.0.2.7" in warnings[0]
    assert OpenAIEngine(FIXTURE_MODEL, server_url="http://192.0.2.7:8000/v1").describe()["api_key"] == \
        "set, sent in clear text (http)"
    assert engine.describe()["api_key"] == "set"
