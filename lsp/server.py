"""The language server object: state shared by the feature modules, and `create_server`.

Threading: pygls runs one asyncio loop, which also reads stdin (transport.py); every handler is
`async def` so `$/cancelRequest` can interrupt it. The model runs on one dedicated worker thread
(`engine_executor`), never on pygls' own pool. A cancelled request sets its `threading.Event`, which
the engine checks between decode steps.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

from completer import __version__
from completer.completion import Completer, CompletionSettings
from completer.reuse import SuggestionReuse

from .documents import DocumentStore
from .pacing import Pacer
from .transport import is_pipe_or_socket, serve_stdio

log = logging.getLogger(__name__)

STATUS_NOTIFICATION = "completer/status"


class RequestLog:
    """The most recent inlineCompletion requests, for the replay bench (completer/stats {"requests": true}).

    A record is keyed the way a client can match it, by document version and client position, and says
    who answered (kind: typed_through | recent | recycled | engine | debounced | cancelled | stale |
    unavailable | error | not_open | invalid), the server-side time and, for the engine, its work (prompt, cached, prefilled,
    decoded, drafted and accepted tokens) and where the time went (milliseconds: reuse, looking for a suggestion
    still valid; parse, the tree brought up to date; wait, queued behind the engine's previous job; prompt,
    prefill, decode, post; back, from the engine thread's end to this request's coroutine)."""

    def __init__(self, size: int = 50_000):
        self.records: deque[dict] = deque(maxlen=size)

    def add(self, version: int, line: int, character: int, kind: str, ms: float, stats=None,
            spent: dict[str, float] | None = None) -> None:
        record = {"version": version, "line": line, "character": character, "kind": kind, "ms": round(ms, 3)}
        if stats is not None:
            record.update(prompt=stats.prompt_tokens, cached=stats.cached_tokens, prefilled=stats.prefill_tokens,
                          decoded=stats.decode_tokens, drafted=stats.drafted_tokens, accepted=stats.accepted_tokens)
        if spent:
            record["spent"] = {k: round(v, 3) for k, v in spent.items()}
        self.records.append(record)


class CompleterProtocol(LanguageServerProtocol):
    """Text sync goes to our DocumentStore (see documents.py for why not pygls' workspace)."""

    _server: "CompleterServer"

    def structure_message(self, data):
        """pygls logs a request whose params do not match the LSP types and never answers it, so the
        client waits forever. Answer it with the JSON-RPC error (-32602 Invalid Params) instead."""
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if isinstance(data, dict) and "id" in data and "method" in data:
                self._send_response(data["id"], error=exc.to_response_error())
            raise

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams):
        td = params.text_document
        self._server.store.open(td.uri, td.language_id, td.version, td.text)
        if self._server.recorder:
            self._server.recorder.opened(td.uri, td.language_id, td.version, td.text)
        self._server.document_changed(td.uri, opened=True)
        yield from ()

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams):
        store = self._server.store
        doc = store.get(params.text_document.uri)
        if doc is None:
            log.warning("didChange for a document that is not open: %s", params.text_document.uri)
            return
        for change in params.content_changes:
            if isinstance(change, types.TextDocumentContentChangePartial):
                r = change.range
                doc.apply_change((r.start.line, r.start.character), (r.end.line, r.end.character), change.text,
                                 store.encoding)
            else:
                doc.apply_change(None, None, change.text, store.encoding)
        doc.version = params.text_document.version
        if self._server.recorder:
            self._server.recorder.changed(doc.uri, doc.version, [_change_record(c) for c in params.content_changes])
        self._server.document_changed(doc.uri)
        yield from ()

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams):
        self._server.store.close(params.text_document.uri)
        if self._server.recorder:
            self._server.recorder.closed(params.text_document.uri)
        if self._server.reuse is not None:
            self._server.reuse.forget(params.text_document.uri)
        self._server.pacer.forget(params.text_document.uri)
        yield from ()


def _change_record(change) -> list:
    """A content change as the session format stores it: [sl, sc, el, ec, text], None for a full text."""
    if isinstance(change, types.TextDocumentContentChangePartial):
        r = change.range
        return [r.start.line, r.start.character, r.end.line, r.end.character, change.text]
    return [None, None, None, None, change.text]


class CompleterServer(LanguageServer):
    def __init__(self, engine_options: dict, settings: CompletionSettings, reuse: bool = True,
                 context: bool = True, record_dir: str | None = None, engine: dict | None = None,
                 prefetch: bool = True, recycle: bool = True, debounce: bool = True):
        super().__init__("completer", __version__, protocol_cls=CompleterProtocol)
        self.store = DocumentStore()
        self.engine_options = engine_options
        # Where the model runs: {"mode": inproc | auto | connect, "socket": path or None, "idle_exit_s": ...}
        self.engine_mode = dict(engine or {"mode": "inproc"})
        self.settings = settings
        self.engine_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="completer-engine")
        self._completer_future: asyncio.Future | None = None
        self.completer: Completer | None = None
        self.load_error: str | None = None
        self.pending: dict[str, threading.Event] = {}  # uri -> cancel event of the request in flight
        self.inflight: dict = {}  # uri -> inline_completion.InFlight, the generation running for it
        self.last_latency_ms: float | None = None
        self.counters = {"requests": 0, "answered": 0, "empty": 0, "cancelled": 0, "stale": 0, "errors": 0,
                         "accepted": 0, "shown": 0, "partially_accepted": 0, "reuse_typed_through": 0,
                         "reuse_recent": 0, "context_updates": 0, "warmups": 0, "unavailable": 0, "prefetched": 0,
                         "recycled": 0, "debounced": 0}
        # Engine work summed over answered requests (what the replay bench reads).
        self.engine_totals = {k: 0 for k in ("engine_requests", "prompt_tokens", "cached_tokens", "restored_tokens",
                                             "shifted_tokens", "prefill_tokens", "decode_tokens", "drafted_tokens",
                                             "accepted_tokens")}
        self.reuse = SuggestionReuse() if reuse else None
        self._next_item_id = 0
        self.last_cursor: dict[str, tuple[int, int]] = {}  # uri -> (line, code-point column) of the last request
        self.change_hooks: list = []  # called with (uri, opened) after each didOpen / didChange
        self.use_context = context
        self.ring = None  # ContextRing over the workspace, set at initialize (None: no cross-file context)
        self.workspace_root = ""  # its path, set at initialize: the scope of shared KV on multi-tenant backends
        self.context_tasks: dict[str, asyncio.Task] = {}
        self.request_log = RequestLog()
        self.prefetch = prefetch  # compute the next suggestion as if the shown one were accepted
        self.recycle = recycle  # a request that typed what is being generated takes the generation over
        self.debounce = debounce  # wait a moment before asking the model while typing outruns it
        self.pacer = Pacer()
        self.background_tasks: set[asyncio.Task] = set()
        self.engine_available = True  # False while a daemon engine is away (status says so once)
        self.recorder = None
        if record_dir:
            from .recording import Recorder

            self.recorder = Recorder(record_dir)

    def start_io(self, stdin=None, stdout=None) -> None:
        """stdio, read by the event loop when stdin is a pipe or socket (see transport.py)."""
        if is_pipe_or_socket(stdin or sys.stdin.buffer):
            serve_stdio(self, stdin, stdout)
        else:
            super().start_io(stdin, stdout)

    # -- engine ---------------------------------------------------------------------------------

    def start_loading(self) -> None:
        if self._completer_future is None:
            loop = asyncio.get_running_loop()
            self._completer_future = loop.run_in_executor(self.engine_executor, self._load)
            self._completer_future.add_done_callback(self._loaded)

    def _load(self) -> Completer:
        mode = self.engine_mode.get("mode", "inproc")
        if mode == "inproc":
            from completer.runtime import load_engine

            engine = load_engine(**self.engine_options)
        else:
            from completer.remote_engine import RemoteEngine

            engine = RemoteEngine(self.engine_options, mode, self.engine_mode.get("socket"),
                                  idle_exit_s=self.engine_mode.get("idle_exit_s"))
        return Completer(engine, self.settings)

    def _loaded(self, fut: asyncio.Future) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("engine failed to load: %s", self.load_error)
            self.send_status("error", message=f"completer could not load its model: {self.load_error}")
            return
        self.completer = fut.result()
        self.send_status("ready")
        compiled = getattr(self.completer.engine, "compile_finished", None)
        if compiled is not None and not compiled.is_set():  # tell the editor when the faster step takes over
            loop = asyncio.get_running_loop()
            completer = self.completer

            def announce() -> None:
                compiled.wait()
                if self.completer is completer:
                    loop.call_soon_threadsafe(self.send_status, "ready")
            threading.Thread(target=announce, name="completer-compile-status", daemon=True).start()

    def release_pending(self, uri: str, cancel: threading.Event) -> None:
        """The request owning `cancel` no longer runs for the document (unless a newer one took its place)."""
        if self.pending.get(uri) is cancel:
            del self.pending[uri]

    def reload_engine(self) -> None:
        """Load the engine again with the current options (after a configuration change)."""
        old = self.completer
        self.completer, self.load_error, self._completer_future = None, None, None
        for cancel in self.pending.values():
            cancel.set()
        if old is not None:
            self.engine_executor.submit(old.engine.close)  # after the request running now, if any
        self.send_status("loading")
        self.start_loading()

    async def get_completer(self) -> Completer | None:
        """The loaded completer, waiting for the load if it is still running; None if loading failed."""
        self.start_loading()
        try:
            return await asyncio.shield(self._completer_future)
        except Exception:
            return None

    # -- status ---------------------------------------------------------------------------------

    def send_status(self, state: str, message: str = "") -> None:
        info = self.completer.engine.describe() if self.completer else {}
        params = {
            "state": state,  # loading | ready | error
            "model": info.get("model_dir", self.engine_options.get("model") or ""),
            "backend": info.get("backend", self.engine_options.get("backend", "torch")),
            "device": info.get("device", ""),
            "compile": info.get("compile", "off"),  # torch: off, compiling, compiled, failed: ...
            "lastLatencyMs": None if self.last_latency_ms is None else round(self.last_latency_ms, 2),
            "message": message,
        }
        try:
            self.protocol.notify(STATUS_NOTIFICATION, params)
        except Exception:  # the client may be gone; status is best effort
            log.debug("status notification failed", exc_info=True)

    def document_changed(self, uri: str, opened: bool = False) -> None:
        for hook in self.change_hooks:
            hook(self, uri, opened)

    def record_stats(self, stats) -> None:
        totals = self.engine_totals
        totals["engine_requests"] += 1
        for key in totals:
            if key != "engine_requests":
                totals[key] += getattr(stats, key)

    def new_item_id(self) -> str:
        self._next_item_id += 1
        return f"c{self._next_item_id}"

    def note_latency(self, started: float) -> None:
        self.last_latency_ms = (time.perf_counter() - started) * 1000


def create_server(engine_options: dict, settings: CompletionSettings = CompletionSettings(),
                  reuse: bool = True, context: bool = True, record_dir: str | None = None,
                  engine: dict | None = None, prefetch: bool = True, recycle: bool = True,
                  debounce: bool = True) -> CompleterServer:
    from . import accept, completion_fallback, configuration, context_updates, inline_completion, lifecycle, stats

    server = CompleterServer(engine_options, settings, reuse, context, record_dir, engine, prefetch, recycle,
                             debounce)
    for feature in (lifecycle, configuration, inline_completion, completion_fallback, accept, stats, context_updates):
        feature.register(server)
    return server
