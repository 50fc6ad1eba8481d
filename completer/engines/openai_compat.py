"""The `openai` backend: any OpenAI-compatible /v1/completions server (trtllm-serve, lmdeploy
api_server, vLLM, llama.cpp server, an NVIDIA Dynamo frontend, `completer serve-openai`).

We build the FIM prompt ourselves and send it as token ids (these servers ignore `suffix`), stream
the answer as server-sent events, and apply the request's stop rules on our side (OutputShaper).
A cancelled request closes its stream; the server stops when its next write fails. The local
tokenizer (`--model`) must be the served model's: ids mean nothing across vocabularies.

Failure policy, tuned for keystrokes: connection errors and 429/5xx before the first byte are
retried with exponential backoff inside the request's deadline; after that the server counts as
down for `down_s`, during which requests answer "unavailable" at once (no pile-up of connects on
every key) and `describe()` says why. 4xx answers are configuration errors and raise.

A server is not trusted to be sane: a stream line over MAX_LINE_BYTES, an error body past
MAX_ERROR_BYTES (only that much is read) and JSON that is not an object count as a broken server
(down, "unavailable"), never a traceback. The session-affinity header carries a hash of the document
URI, not the URI (file paths say whose machine and which project). An API key sent over plain http to
a host that is not this machine is warned about once (logged, and `describe()` says so): team servers
often run plain http inside a trusted network, so it is not refused, but the key is readable on the
way.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from completer.tokenizer import Tokenizer

from .contract import (
    BackendUnavailableError,
    GenerationRequest,
    GenerationStats,
    GenerationStream,
    ScoreRequest,
)
from .model_config import read_hf_config
from .shaper import OutputShaper

log = logging.getLogger(__name__)

API_KEY_VARIABLES = ("COMPLETER_API_KEY", "OPENAI_API_KEY")
RETRY_STATUS = {429, 500, 502, 503, 504}
MAX_STOP_STRINGS = 4  # the OpenAI API's limit on `stop`
MAX_LINE_BYTES = 1 << 20  # one server-sent event line (a streamed chunk is a few hundred bytes)
MAX_ERROR_BYTES = 64 << 10  # of an error answer's body
MAX_BODY_BYTES = 8 << 20  # of a /models answer
_warned_clear_text: set[str] = set()


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def affinity_value(session_key: str) -> str:
    """What the session-affinity header carries: a stable hash of the document URI, not the URI."""
    return hashlib.sha256(session_key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def api_key_from_env() -> str | None:
    return next((os.environ[v] for v in API_KEY_VARIABLES if os.environ.get(v)), None)


def endpoint(server_url: str) -> tuple[bool, str, int, str]:
    """http(s)://HOST[:PORT][/v1] -> (https?, host, port, base path)."""
    url = urlsplit(server_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        raise BackendUnavailableError(f"--server-url {server_url!r}: expected http(s)://HOST[:PORT][/v1]")
    https = url.scheme == "https"
    return https, url.hostname, url.port or (443 if https else 80), url.path.rstrip("/") or "/v1"


def get(server_url: str, path: str, timeout_s: float, api_key: str | None = None) -> tuple[int, bytes]:
    """One GET on a fresh connection (e.g. /models): (HTTP status, body)."""
    https, host, port, base = endpoint(server_url)
    conn = (http.client.HTTPSConnection if https else http.client.HTTPConnection)(host, port, timeout=timeout_s)
    try:
        conn.request("GET", base + path, headers={"Authorization": f"Bearer {api_key}"} if api_key else {})
        resp = conn.getresponse()
        return resp.status, resp.read(MAX_BODY_BYTES if resp.status == 200 else MAX_ERROR_BYTES)
    finally:
        conn.close()


class ServerError(RuntimeError):
    """The server refused the request (4xx): a setting to fix, not a transient failure."""


class OpenAIEngine:
    name = "openai"
    can_heal = False  # a remote server cannot be constrained to re-type a backed-up token
    # /v1/completions has no portable way to score given continuations (vLLM's prompt_logprobs and
    # llama.cpp's n_probs differ), so candidates are not reranked on this backend.
    can_score = False
    can_prefill = False  # the server's prefill cannot be priced or stopped from here

    def __init__(self, model_dir, *, device: str = "auto", dtype: str = "auto", server_url: str | None = None,
                 served_model: str | None = None, affinity_header: str = "X-Session-Id",
                 send_stop_ids: bool = False, extra_body: dict | None = None, connect_timeout_s: float = 2.0,
                 read_timeout_s: float = 30.0, retries: int = 2, backoff_s: float = 0.05, down_s: float = 1.0,
                 max_seq: int | None = None):
        if not server_url:
            raise BackendUnavailableError("the openai backend needs --server-url (e.g. http://127.0.0.1:8000/v1)")
        self._https, self._host, self._port, self._base = endpoint(server_url)
        self.server_url = server_url.rstrip("/")
        t0 = time.perf_counter()
        self.model_dir = Path(model_dir)
        self.tokenizer = Tokenizer(self.model_dir)
        self.device = self.server_url
        self.dtype = "server"
        self.affinity_header = affinity_header
        self.send_stop_ids, self.extra_body = send_stop_ids, dict(extra_body or {})
        self.connect_timeout_s, self.read_timeout_s = connect_timeout_s, read_timeout_s
        self.retries, self.backoff_s, self.down_s = retries, backoff_s, down_s
        self.api_key = api_key_from_env()
        self.key_in_clear = bool(self.api_key) and not self._https and not is_loopback(self._host)
        if self.key_in_clear and self._host not in _warned_clear_text:
            _warned_clear_text.add(self._host)
            log.warning("the API key goes to %s over plain http: anyone on the network path can read it; "
                        "use an https:// --server-url", self.server_url)
        self._idle: list[http.client.HTTPConnection] = []  # kept-alive connections, reused per request
        self._lock = threading.Lock()
        self._down_until = 0.0
        self.status = "unknown"  # ok | down: <why>
        self.served_model = served_model
        self.max_seq = max_seq or _config_max_seq(self.model_dir)
        self._probe()
        self.load_ms = (time.perf_counter() - t0) * 1000

    # -- Engine ---------------------------------------------------------------------------------

    def describe(self) -> dict:
        return {"backend": self.name, "device": self.device, "dtype": self.dtype, "model_dir": str(self.model_dir),
                "served_model": self.served_model, "max_seq": self.max_seq, "can_heal": self.can_heal,
                "status": self.status,
                "api_key": ("set, sent in clear text (http)" if self.key_in_clear else "set") if self.api_key else "none",
                "affinity_header": self.affinity_header, "send_stop_ids": self.send_stop_ids,
                "speculation": "the server's own", "load_ms": round(self.load_ms, 1)}

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def score(self, request: ScoreRequest, cancel: threading.Event | None = None) -> list[list[float]]:
        raise NotImplementedError("the openai backend cannot score continuations (can_score is False)")

    def generate(self, request: GenerationRequest, cancel: threading.Event | None = None) -> GenerationStream:
        stats = GenerationStats(prompt_tokens=len(request.prompt_ids))
        return GenerationStream(self._run(request, cancel or threading.Event(), stats), stats)

    # -- internals ------------------------------------------------------------------------------

    def _probe(self) -> None:
        """Learn the served model (and its context) once at start; a server that is not up yet is
        fine: requests answer "unavailable" until it is."""
        try:
            status, body = get(self.server_url, "/models", self.connect_timeout_s, self.api_key)
            payload = json.loads(body or b"{}")
            if not isinstance(payload, dict):
                raise ValueError(f"/models answered JSON that is not an object: {str(payload)[:80]}")
        except (OSError, http.client.HTTPException, ValueError) as exc:
            self._mark_down(f"{type(exc).__name__}: {exc}")
            log.warning("openai backend: %s does not answer yet (%s)", self.server_url, exc)
            return
        if status != 200:
            raise ServerError(f"{self.server_url}/models answered {status}: {_message(payload)}")
        data = payload.get("data")
        models = [m for m in (data if isinstance(data, list) else []) if isinstance(m, dict) and isinstance(m.get("id"), str)]
        if self.served_model is None and models:
            self.served_model = models[0]["id"]
        elif self.served_model is not None and models and self.served_model not in {m["id"] for m in models}:
            raise ServerError(f"{self.server_url} does not serve {self.served_model!r} "
                              f"(it serves {', '.join(m['id'] for m in models)})")
        served = next((m for m in models if m["id"] == self.served_model), {})
        if isinstance(served.get("max_model_len"), int):
            self.max_seq = min(self.max_seq, served["max_model_len"])
        self.status = "ok"

    def _headers(self, session_key: str = "") -> dict:
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if session_key and self.affinity_header:
            headers[self.affinity_header] = affinity_value(session_key)
        return headers

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """A kept-alive connection if one is idle (True), else a new one."""
        with self._lock:
            if self._idle:
                return self._idle.pop(), True
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self.connect_timeout_s), False

    def _release(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < 4:
                self._idle.append(conn)
                return
        conn.close()

    def _mark_down(self, why: str) -> None:
        self.status = f"down: {why}"
        self._down_until = time.monotonic() + self.down_s

    def _body(self, request: GenerationRequest) -> dict:
        stop = list(request.stop.stop_strings)
        # One-line suggestions: let the server stop at the newline instead of decoding past it.
        if request.stop.max_lines == 1 and request.stop.min_indent is None:
            stop.append("\n")
        body = {"model": self.served_model or "", "prompt": list(request.prompt_ids),
                "max_tokens": request.max_new_tokens, "temperature": request.temperature,
                "top_p": request.top_p, "stream": True, "stream_options": {"include_usage": True}}
        if stop:
            body["stop"] = stop[:MAX_STOP_STRINGS]
        if request.seed is not None:
            body["seed"] = request.seed
        if self.send_stop_ids and request.stop.stop_token_ids:
            body["stop_token_ids"] = sorted(request.stop.stop_token_ids)
        body.update(self.extra_body)
        return body

    def _open(self, request: GenerationRequest, cancel: threading.Event):
        """POST the request, retrying transient failures; the streaming response and its connection."""
        data = json.dumps(self._body(request)).encode()
        headers = self._headers(request.session_key)
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                pause = self.backoff_s * 2 ** (attempt - 1)
                if request.deadline_s is not None and time.monotonic() + pause > request.deadline_s:
                    break
                if cancel.wait(pause):
                    return None, None
            conn, reused = self._connection()
            try:
                conn.timeout = self.connect_timeout_s
                conn.request("POST", self._base + "/completions", body=data, headers=headers)
                if conn.sock is not None:
                    conn.sock.settimeout(self.read_timeout_s)
                resp = conn.getresponse()
                if resp.status == 200:
                    return conn, resp
                payload = resp.read(MAX_ERROR_BYTES)
                conn.close()
                if resp.status not in RETRY_STATUS:
                    raise ServerError(f"{self.server_url}/completions answered {resp.status}: {_message(payload)}")
                last = f"HTTP {resp.status}: {_message(payload)}"
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                last = f"{type(exc).__name__}: {exc}"
                if reused:  # the server closed an idle kept-alive connection: forget them all
                    self.close()
        self._mark_down(last)
        return None, None

    def _run(self, req: GenerationRequest, cancel: threading.Event, stats: GenerationStats):
        t_start = time.perf_counter()
        if time.monotonic() < self._down_until:
            stats.finish_reason = "unavailable"
            return
        conn, resp = self._open(req, cancel)
        if resp is None:
            stats.finish_reason = "cancelled" if cancel.is_set() else "unavailable"
            return
        self.status = "ok"
        # Cancel and deadline must interrupt a blocked read: a watcher shuts the socket down.
        done = threading.Event()
        watcher = threading.Thread(target=_watch, args=(conn, cancel, req.deadline_s, done), daemon=True)
        watcher.start()
        shaper = OutputShaper(req, stats)
        server_finish = usage = None
        clean = False
        try:
            for event in _events(resp):
                if event == "[DONE]":
                    resp.read()  # the closing chunk: the connection is then ready for the next request
                    clean = True
                    break
                chunk = json.loads(event)
                if not isinstance(chunk, dict):
                    raise ValueError(f"a stream event that is not a JSON object: {event[:80]!r}")
                if "error" in chunk:
                    raise ServerError(f"{self.server_url}: {_message(chunk)}")
                usage = chunk.get("usage") if isinstance(chunk.get("usage"), dict) else usage
                choices = chunk.get("choices")
                for choice in choices if isinstance(choices, list) else []:
                    if not isinstance(choice, dict):
                        raise ValueError(f"a choice that is not a JSON object: {str(choice)[:80]!r}")
                    if isinstance(choice.get("text"), str) and choice["text"] and not shaper.finish:
                        if stats.decode_tokens == 0:
                            stats.prefill_ms = (time.perf_counter() - t_start) * 1000
                        delta = shaper.add_text(choice["text"])
                        if delta is not None:
                            yield delta
                    if isinstance(choice.get("finish_reason"), str) and choice["finish_reason"]:
                        # vLLM and completer serve-openai say which rule stopped: a string or an id.
                        matched = choice.get("stop_reason")
                        server_finish = "stop_string" if isinstance(matched, str) else choice["finish_reason"]
                # At the token budget the server (given the same one) is ending its stream too: read
                # on to [DONE] for the usage chunk (cached tokens). Other rules are ours alone, so
                # closing the stream is what stops the server.
                if shaper.check(cancel) and shaper.finish != "max_tokens":
                    break
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if not (cancel.is_set() or shaper.check(cancel)):
                self._mark_down(f"{type(exc).__name__}: {exc}")
                shaper.finish = "unavailable" if stats.decode_tokens == 0 else "interrupted"
        else:
            if not (clean or shaper.finish or shaper.check(cancel)):  # the server hung up mid-answer
                self._mark_down("the server closed the stream before [DONE]")
                shaper.finish = "unavailable" if stats.decode_tokens == 0 else "interrupted"
        finally:
            done.set()
            if clean and not cancel.is_set():
                self._release(conn)
            else:
                conn.close()  # closing the stream is how an OpenAI-compatible server is told to stop
        shaper.check(cancel)
        # A bare "stop" is an end-of-sequence or stop id, or a stop string on servers that do not say.
        finish = shaper.finish or {"length": "max_tokens", "stop": "stop_token"}.get(
            server_finish or "", server_finish or "stop_token")
        if finish != "cancelled":
            tail = shaper.flush()  # text held back in case a stop string or block end would cut it
            if tail is not None and tail.text:
                yield tail
        stats.finish_reason = finish
        if usage:
            def count(value, default: int = 0) -> int:
                return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else default

            stats.prompt_tokens = count(usage.get("prompt_tokens"), stats.prompt_tokens)
            stats.decode_tokens = max(stats.decode_tokens, count(usage.get("completion_tokens")))
            details = usage.get("prompt_tokens_details")
            stats.cached_tokens = count(details.get("cached_tokens")) if isinstance(details, dict) else 0
            stats.prefill_tokens = stats.prompt_tokens - stats.cached_tokens
        stats.first_token_ms = stats.prefill_ms
        stats.decode_ms = (time.perf_counter() - t_start) * 1000 - stats.prefill_ms


def _events(resp):
    """The `data:` payloads of a server-sent event stream."""
    while True:
        line = resp.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES:
            raise ValueError(f"a stream line over {MAX_LINE_BYTES} bytes")
        line = line.strip()
        if line.startswith(b"data:"):
            yield line[5:].strip().decode("utf-8")


def _watch(conn, cancel: threading.Event, deadline_s: float | None, done: threading.Event) -> None:
    while not done.is_set():
        if cancel.wait(0.005) or (deadline_s is not None and time.monotonic() > deadline_s):
            if not done.is_set() and conn.sock is not None:
                try:
                    conn.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            return


def _message(payload) -> str:
    if isinstance(payload, (bytes, bytearray)):
        try:
            payload = json.loads(payload)
        except ValueError:
            return payload[:200].decode("utf-8", "replace")
    if isinstance(payload, dict):
        err = payload.get("error", payload)
        return str(err.get("message", err) if isinstance(err, dict) else err)[:300]
    return str(payload)[:300]


def _config_max_seq(model_dir: Path) -> int:
    try:
        cfg = read_hf_config(model_dir)
    except (OSError, ValueError):  # a served model needs no local config (UnsupportedModelError: a ValueError)
        return 8192
    return int(cfg.get("max_position_embeddings") or 8192)
