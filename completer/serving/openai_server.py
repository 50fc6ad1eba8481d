"""`completer serve-openai`: any of our engines behind a small OpenAI-compatible HTTP server.

Routes: POST /v1/completions (token-id or text prompts, streaming as server-sent events), GET
/v1/models, GET /health. Enough of the API for `--backend openai` clients, the team setup in the
README and the backend contract tests, which need a real server, not a mock.

Extensions beyond the OpenAI API (vLLM spells them the same way): `stop_token_ids`, and, with
`--report-cached-tokens`, `usage.prompt_tokens_details.cached_tokens`. A client that closes the
stream cancels its request within one decode step (the next write fails).

Under bad input and load (issue 24): every field is checked for type and range (400 with a message
naming it); a request's work is capped (MAX_NEW_TOKENS, the context, REQUEST_DEADLINE_S of decoding);
a socket that sends or takes nothing for CLIENT_TIMEOUT_S is dropped; the engine's output goes
through a bounded queue to the thread writing the response, so a client that stops reading costs
only its own request (cancelled after STALL_S), never the engine lock; at most MAX_CONNECTIONS
connections and MAX_ACTIVE requests run at once, and more are answered 429 with Retry-After.

The engine's prefix cache is shared by every client, and a cache hit shows in `cached_tokens`: a
client could test guesses about what another sent. The server has one API key for everyone, so there
is no tenant to salt the cache by; cached tokens are therefore not reported unless
`--report-cached-tokens` says the server has a single user (benchmarks, the contract tests). A hit
still shortens the answer's latency: people who must not learn about each other's code need a
server each.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import queue
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from completer.engines.contract import Engine, GenerationRequest, StopRules
from completer.serving.refuser import Refuser

log = logging.getLogger(__name__)

MAX_BODY = 4 << 20  # bytes: a 32k-token prompt is ~250 KB of ids, MAX_PROMPT_CHARS of code ~1.2 MB of JSON
MAX_PROMPT_CHARS = 1 << 20  # a text prompt (tokenized before its length in tokens is known)
MAX_NEW_TOKENS = 1024  # a completion; the language server asks for at most 1024 too
MAX_STOP, MAX_STOP_CHARS, MAX_STOP_IDS = 16, 256, 256
MAX_SEED = 2**63 - 1
CLIENT_TIMEOUT_S = 30.0  # a connection that sends or takes nothing for this long is dropped
STALL_S = 5.0  # a stream whose client takes nothing for this long is cancelled
REQUEST_DEADLINE_S = 60.0  # of decoding, per request
MAX_CONNECTIONS = 64  # open connections (a thread each)
MAX_ACTIVE = 16  # requests generating or waiting for the engine
STREAM_QUEUE = 64  # deltas buffered between the engine and a client
REFUSE_QUEUE = 16  # connections past MAX_CONNECTIONS waiting for their 429; more are closed at once
REFUSE_LINGER_S = 1.0  # how long a refused client may take to finish sending before its socket closes
FINISH = {"stop_token": "stop", "stop_string": "stop", "max_lines": "stop", "block_end": "stop",
          "max_tokens": "length", "length": "length", "deadline": "length", "cancelled": "cancelled"}


class RequestError(ValueError):
    def __init__(self, status: HTTPStatus, message: str):
        super().__init__(message)
        self.status = status


def eos_ids_of(model_dir) -> frozenset[int]:
    """The model's end-of-sequence ids (config.json and generation_config.json; an id or a list)."""
    ids: set[int] = set()
    for name in ("config.json", "generation_config.json"):
        try:
            eos = json.loads((Path(model_dir) / name).read_text()).get("eos_token_id")
        except (OSError, ValueError):
            continue
        ids.update(e for e in (eos if isinstance(eos, list) else [eos]) if isinstance(e, int))
    return frozenset(ids)


def _number(body: dict, key: str, default: float) -> float:
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"{key} must be a number")
    return float(value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_completion(body: dict, engine: Engine, model_name: str, session_key: str,
                     eos_ids: frozenset[int] = frozenset()) -> tuple[GenerationRequest, bool, bool]:
    """An OpenAI /v1/completions body -> (our request, stream?, include usage in the stream?).
    Every field is checked for type and range: RequestError (400, naming the field) otherwise."""
    bad = HTTPStatus.BAD_REQUEST
    if body.get("model") not in (None, "", model_name):
        if not isinstance(body.get("model"), str):
            raise RequestError(bad, "model must be a string")
        raise RequestError(HTTPStatus.NOT_FOUND, f"model {body.get('model')!r} is not served here (this is {model_name!r})")
    vocab = engine.tokenizer.vocab_size
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        if len(prompt) > MAX_PROMPT_CHARS:
            raise RequestError(bad, f"prompt of {len(prompt)} characters is over the {MAX_PROMPT_CHARS} limit")
        ids = engine.tokenizer.encode(prompt)
    elif isinstance(prompt, list) and prompt and all(_is_int(t) for t in prompt):
        if len(prompt) + 1 >= engine.max_seq:
            raise RequestError(bad, f"prompt of {len(prompt)} tokens exceeds the {engine.max_seq}-token context")
        ids = prompt
        if max(ids) >= vocab or min(ids) < 0:
            raise RequestError(bad, "prompt token id out of the vocabulary")
    else:
        raise RequestError(bad, "prompt must be a string or a non-empty list of token ids (one prompt)")
    if not ids:
        raise RequestError(bad, "empty prompt")
    for key in ("n", "best_of"):
        if body.get(key, 1) is not None and (not _is_int(body.get(key, 1)) or body.get(key, 1) != 1):
            raise RequestError(bad, "only n=1 is supported")
    max_tokens = body.get("max_tokens", 16)
    if not _is_int(max_tokens) or not 1 <= max_tokens <= MAX_NEW_TOKENS:
        raise RequestError(bad, f"max_tokens must be an integer from 1 to {MAX_NEW_TOKENS}")
    if len(ids) + 1 >= engine.max_seq:
        raise RequestError(bad, f"prompt of {len(ids)} tokens exceeds the {engine.max_seq}-token context")
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    stop_ids = body.get("stop_token_ids") or []
    if not isinstance(stop, list) or len(stop) > MAX_STOP or \
            not all(isinstance(x, str) and 0 < len(x) <= MAX_STOP_CHARS for x in stop):
        raise RequestError(bad, f"stop must be a string or up to {MAX_STOP} strings of 1 to {MAX_STOP_CHARS} characters")
    if not isinstance(stop_ids, list) or len(stop_ids) > MAX_STOP_IDS or \
            not all(_is_int(t) and 0 <= t < vocab for t in stop_ids):
        raise RequestError(bad, f"stop_token_ids must be up to {MAX_STOP_IDS} token ids of the vocabulary")
    temperature = _number(body, "temperature", 1.0)
    top_p = _number(body, "top_p", 1.0)
    if not 0 <= temperature <= 2 or not 0 < top_p <= 1:
        raise RequestError(bad, "temperature must be in [0, 2] and top_p in (0, 1]")
    seed = body.get("seed")
    if seed is not None and (not _is_int(seed) or not 0 <= seed <= MAX_SEED):
        raise RequestError(bad, f"seed must be an integer from 0 to {MAX_SEED}")
    if not isinstance(body.get("stream", False), bool):
        raise RequestError(bad, "stream must be true or false")
    stream_options = body.get("stream_options")
    stream_options = {} if stream_options is None else stream_options
    if not isinstance(stream_options, dict) or not isinstance(stream_options.get("include_usage", False), bool):
        raise RequestError(bad, "stream_options must be an object with a boolean include_usage")
    request = GenerationRequest(
        prompt_ids=tuple(ids),
        max_new_tokens=max_tokens,
        deadline_s=time.monotonic() + REQUEST_DEADLINE_S,
        stop=StopRules(frozenset(stop_ids) | eos_ids, tuple(stop), max_lines=0),
        session_key=session_key,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
    )
    return request, bool(body.get("stream")), bool(stream_options.get("include_usage"))


def usage_of(stats, report_cached: bool = False) -> dict:
    usage = {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.decode_tokens,
             "total_tokens": stats.prompt_tokens + stats.decode_tokens}
    if report_cached:  # see the module docstring
        usage["prompt_tokens_details"] = {"cached_tokens": stats.cached_tokens}
    return usage


_BUSY = json.dumps({"error": {"message": "busy: too many connections; try again", "type": "Too Many Requests",
                              "code": 429}}).encode()


_REFUSAL = (b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_BUSY), _BUSY))


class CompletionServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client hanging up is routine, not a traceback
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def __init__(self, address, engine: Engine, model_name: str, api_key: str | None = None,
                 eos_ids: frozenset[int] = frozenset(), report_cached: bool = False):
        self.engine, self.model_name, self.api_key, self.eos_ids = engine, model_name, api_key, eos_ids
        self.report_cached = report_cached
        self.served = 0
        self.connections = 0
        self._count_lock = threading.Lock()
        self.active = threading.BoundedSemaphore(MAX_ACTIVE)
        self.refuser = Refuser("openai-refuse", REFUSE_QUEUE, REFUSE_LINGER_S)
        super().__init__(address, CompletionHandler)

    def server_close(self):
        super().server_close()
        self.refuser.close()

    def process_request(self, request, client_address):
        """A thread per connection, up to MAX_CONNECTIONS; past that the one refusing thread answers 429."""
        with self._count_lock:
            full = self.connections >= MAX_CONNECTIONS
            if not full:
                self.connections += 1
        if not full:
            return super().process_request(request, client_address)
        self.refuser.refuse(request, _REFUSAL)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._count_lock:
                self.connections -= 1


_END = object()


class _Producer:
    """Runs one generation on a thread of its own and hands its deltas to the response writer
    through a bounded queue. If the writer takes nothing for STALL_S (its client stopped reading),
    the generation is cancelled: the engine is never held up by a client."""

    def __init__(self, engine: Engine, request: GenerationRequest, cancel: threading.Event, active):
        self.cancel, self.active = cancel, active
        self.queue: queue.Queue = queue.Queue(maxsize=STREAM_QUEUE)
        self.result = engine.generate(request, cancel)
        self.error: Exception | None = None
        self.finished = threading.Event()
        threading.Thread(target=self._run, name="completer-openai-generate", daemon=True).start()

    def _run(self) -> None:
        try:
            for delta in self.result:
                if self.cancel.is_set():
                    continue  # the engine stops within a step; nobody reads any more
                try:
                    self.queue.put(delta, timeout=STALL_S)
                except queue.Full:
                    log.info("a client stopped reading its stream: cancelled")
                    self.cancel.set()
        except Exception as exc:  # an engine failure is the server's, not the client's
            log.exception("generation failed")
            self.error = exc
        finally:
            self.result.close()
            self.finished.set()
            self.active.release()
            try:
                self.queue.put_nowait(_END)
            except queue.Full:
                pass  # the reader sees `finished` instead

    def __iter__(self):
        while True:
            try:
                item = self.queue.get(timeout=0.2)
            except queue.Empty:
                if self.finished.is_set() and self.queue.empty():
                    return
                continue
            if item is _END:
                return
            yield item


class CompletionHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection across keystrokes
    server: CompletionServer
    timeout = CLIENT_TIMEOUT_S  # on every read and write of the connection

    def log_message(self, fmt, *args):  # the default writes every request to stderr
        log.debug("%s " + fmt, self.address_string(), *args)

    # -- plumbing --------------------------------------------------------------------------------

    def _send_json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: HTTPStatus, message: str, headers: dict | None = None) -> None:
        data = json.dumps({"error": {"message": message, "type": status.phrase, "code": int(status)}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if not self.server.api_key:
            return True
        given = self.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {self.server.api_key}".encode()):
            return True
        self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong API key")
        return False

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    # -- routes ----------------------------------------------------------------------------------

    def do_GET(self):
        if self.path == "/health":
            return self._send_json(200, {"status": "ok"})
        if not self._authorized():
            return
        if self.path == "/v1/models":
            return self._send_json(200, {"object": "list", "data": [{
                "id": self.server.model_name, "object": "model", "owned_by": "completer",
                "max_model_len": self.server.engine.max_seq}]})
        self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}")

    def do_POST(self):
        if not self._authorized():
            return
        if self.path != "/v1/completions":
            return self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}")
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if not 0 < length <= MAX_BODY:
                self.close_connection = True  # the body is not read: the connection cannot go on
                raise RequestError(HTTPStatus.BAD_REQUEST, f"missing or oversized body (at most {MAX_BODY} bytes)")
            body = json.loads(self.rfile.read(length))
            if not isinstance(body, dict):
                raise RequestError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
            session = self.headers.get("X-Session-Id", "")[:256]
            request, stream, include_usage = parse_completion(body, self.server.engine, self.server.model_name,
                                                              session, self.server.eos_ids)
        except RequestError as exc:
            return self._error(exc.status, str(exc))
        except (ValueError, TypeError, RecursionError) as exc:
            return self._error(HTTPStatus.BAD_REQUEST, f"bad request: {exc}")
        if not self.server.active.acquire(blocking=False):
            return self._error(HTTPStatus.TOO_MANY_REQUESTS, "busy: too many requests running; try again",
                               {"Retry-After": "1"})
        self.server.served += 1
        rid = f"cmpl-{uuid.uuid4().hex[:16]}"
        created = int(time.time())
        cancel = threading.Event()
        try:
            producer = _Producer(self.server.engine, request, cancel, self.server.active)
        except Exception as exc:
            self.server.active.release()
            log.exception("generation failed")
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"generation failed: {exc}")
        result = producer.result
        report_cached = self.server.report_cached

        def chunk(text: str, finish: str | None) -> dict:
            choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
            if finish == "stop":  # as vLLM: a stop string (which one is not tracked: the first) or None for a stop id
                hit = result.stats.finish_reason in ("stop_string", "max_lines")
                choice["stop_reason"] = (request.stop.stop_strings or ("\n",))[0] if hit else None
            return {"id": rid, "object": "text_completion", "created": created, "model": self.server.model_name,
                    "choices": [choice]}

        if not stream:
            text = "".join(d.text for d in producer)
            if producer.error is not None:
                return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"generation failed: {producer.error}")
            return self._send_json(200, {**chunk(text, FINISH.get(result.stats.finish_reason, "stop")),
                                         "usage": usage_of(result.stats, report_cached)})

        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for delta in producer:
                if delta.text:
                    self._chunk(b"data: %s\n\n" % json.dumps(chunk(delta.text, None)).encode())
            if producer.error is not None:
                message = {"error": {"message": f"generation failed: {producer.error}"}}
                self._chunk(b"data: %s\n\n" % json.dumps(message).encode())
                finish = "error"
            else:
                finish = FINISH.get(result.stats.finish_reason, "stop")
            self._chunk(b"data: %s\n\n" % json.dumps(chunk("", finish)).encode())
            if include_usage:
                final = {**chunk("", None), "choices": [], "usage": usage_of(result.stats, report_cached)}
                self._chunk(b"data: %s\n\n" % json.dumps(final).encode())
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")
        except OSError:  # the client closed the stream or stopped reading (timeout): stop decoding
            cancel.set()
            self.close_connection = True


def serve(engine: Engine, host: str = "127.0.0.1", port: int = 8000, model_name: str = "completer",
          api_key: str | None = None, ready=None, report_cached: bool = False) -> None:
    eos = eos_ids_of(engine.describe().get("model_dir", ""))
    server = CompletionServer((host, port), engine, model_name, api_key, eos, report_cached)
    bound_host, bound_port = server.server_address[:2]
    if ready is not None:
        ready(f"http://{bound_host}:{bound_port}/v1")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
