"""`completer serve-openai`: any of our engines behind a small OpenAI-compatible HTTP server.

Routes: POST /v1/completions (token-id or text prompts, streaming as server-sent events), GET
/v1/models, GET /health. Enough of the API for `--backend openai` clients, the team setup in the
README and the backend contract tests, which need a real server, not a mock.

Extensions beyond the OpenAI API (vLLM spells them the same way): `stop_token_ids`, and
`usage.prompt_tokens_details.cached_tokens`. A client that closes the stream cancels its request
within one decode step (the next write fails).
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from completer.engines.contract import Engine, GenerationRequest, StopRules

log = logging.getLogger(__name__)

MAX_BODY = 8 << 20  # bytes; a prompt of token ids is far smaller
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


def parse_completion(body: dict, engine: Engine, model_name: str, session_key: str,
                     eos_ids: frozenset[int] = frozenset()) -> tuple[GenerationRequest, bool, bool]:
    """An OpenAI /v1/completions body -> (our request, stream?, include usage in the stream?)."""
    if body.get("model") not in (None, "", model_name):
        raise RequestError(HTTPStatus.NOT_FOUND, f"model {body.get('model')!r} is not served here (this is {model_name!r})")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        ids = engine.tokenizer.encode(prompt)
    elif isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        ids = prompt
        if max(ids) >= engine.tokenizer.vocab_size or min(ids) < 0:
            raise RequestError(HTTPStatus.BAD_REQUEST, "prompt token id out of the vocabulary")
    else:
        raise RequestError(HTTPStatus.BAD_REQUEST, "prompt must be a string or a non-empty list of token ids (one prompt)")
    if not ids:
        raise RequestError(HTTPStatus.BAD_REQUEST, "empty prompt")
    if body.get("n", 1) != 1 or body.get("best_of", 1) != 1:
        raise RequestError(HTTPStatus.BAD_REQUEST, "only n=1 is supported")
    max_tokens = body.get("max_tokens", 16)
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise RequestError(HTTPStatus.BAD_REQUEST, "max_tokens must be a positive integer")
    if len(ids) + 1 >= engine.max_seq:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"prompt of {len(ids)} tokens exceeds the {engine.max_seq}-token context")
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    stop_ids = body.get("stop_token_ids") or []
    if not all(isinstance(s, str) and s for s in stop) or not all(isinstance(t, int) for t in stop_ids):
        raise RequestError(HTTPStatus.BAD_REQUEST, "stop must be strings and stop_token_ids integers")
    temperature = float(body.get("temperature") if body.get("temperature") is not None else 1.0)
    top_p = float(body.get("top_p") if body.get("top_p") is not None else 1.0)
    if temperature < 0 or not 0 < top_p <= 1:
        raise RequestError(HTTPStatus.BAD_REQUEST, "temperature must be >= 0 and top_p in (0, 1]")
    request = GenerationRequest(
        prompt_ids=tuple(ids),
        max_new_tokens=max_tokens,
        stop=StopRules(frozenset(stop_ids) | eos_ids, tuple(stop), max_lines=0),
        session_key=session_key,
        temperature=temperature,
        top_p=top_p,
        seed=body.get("seed"),
    )
    stream_options = body.get("stream_options") or {}
    return request, bool(body.get("stream")), bool(stream_options.get("include_usage"))


def usage_of(stats) -> dict:
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.decode_tokens,
            "total_tokens": stats.prompt_tokens + stats.decode_tokens,
            "prompt_tokens_details": {"cached_tokens": stats.cached_tokens}}


class CompletionServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client hanging up is routine, not a traceback
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def __init__(self, address, engine: Engine, model_name: str, api_key: str | None = None,
                 eos_ids: frozenset[int] = frozenset()):
        self.engine, self.model_name, self.api_key, self.eos_ids = engine, model_name, api_key, eos_ids
        self.served = 0
        super().__init__(address, CompletionHandler)


class CompletionHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection across keystrokes
    server: CompletionServer

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

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send_json(status, {"error": {"message": message, "type": status.phrase, "code": int(status)}})

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
                raise RequestError(HTTPStatus.BAD_REQUEST, "missing or oversized body")
            body = json.loads(self.rfile.read(length))
            if not isinstance(body, dict):
                raise RequestError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
            session = self.headers.get("X-Session-Id", "")
            request, stream, include_usage = parse_completion(body, self.server.engine, self.server.model_name,
                                                              session, self.server.eos_ids)
        except RequestError as exc:
            return self._error(exc.status, str(exc))
        except (ValueError, TypeError) as exc:
            return self._error(HTTPStatus.BAD_REQUEST, f"bad request: {exc}")
        self.server.served += 1
        rid = f"cmpl-{uuid.uuid4().hex[:16]}"
        created = int(time.time())
        cancel = threading.Event()
        result = self.server.engine.generate(request, cancel)

        def chunk(text: str, finish: str | None) -> dict:
            choice = {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
            if finish == "stop":  # as vLLM: a stop string (which one is not tracked: the first) or None for a stop id
                hit = result.stats.finish_reason in ("stop_string", "max_lines")
                choice["stop_reason"] = (request.stop.stop_strings or ("\n",))[0] if hit else None
            return {"id": rid, "object": "text_completion", "created": created, "model": self.server.model_name,
                    "choices": [choice]}

        if not stream:
            try:
                text = "".join(d.text for d in result)
            except Exception as exc:  # an engine failure is the server's, not the client's
                log.exception("generation failed")
                return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"generation failed: {exc}")
            return self._send_json(200, {**chunk(text, FINISH.get(result.stats.finish_reason, "stop")),
                                         "usage": usage_of(result.stats)})

        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._stream(result, chunk, include_usage)
        except (BrokenPipeError, ConnectionResetError):
            # The client closed the stream: stop decoding at the next step.
            cancel.set()
            for _ in result:
                pass
            self.close_connection = True

    def _stream(self, result, chunk, include_usage: bool) -> None:
        try:
            for delta in result:
                if delta.text:
                    self._chunk(b"data: %s\n\n" % json.dumps(chunk(delta.text, None)).encode())
            finish = FINISH.get(result.stats.finish_reason, "stop")
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception as exc:
            log.exception("generation failed")
            self._chunk(b"data: %s\n\n" % json.dumps({"error": {"message": f"generation failed: {exc}"}}).encode())
            finish = "error"
        self._chunk(b"data: %s\n\n" % json.dumps(chunk("", finish)).encode())
        if include_usage:
            final = {**chunk("", None), "choices": [], "usage": usage_of(result.stats)}
            self._chunk(b"data: %s\n\n" % json.dumps(final).encode())
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")


def serve(engine: Engine, host: str = "127.0.0.1", port: int = 8000, model_name: str = "completer",
          api_key: str | None = None, ready=None) -> None:
    eos = eos_ids_of(engine.describe().get("model_dir", ""))
    server = CompletionServer((host, port), engine, model_name, api_key, eos)
    bound_host, bound_port = server.server_address[:2]
    if ready is not None:
        ready(f"http://{bound_host}:{bound_port}/v1")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
