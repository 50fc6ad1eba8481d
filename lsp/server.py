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
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lsprotocol import types
from pygls.exceptions import FeatureNotificationError, FeatureRequestError, JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.language_server import lsp_method

from completer import __version__
from completer.completion.pipeline import Completer, CompletionSettings
from completer.completion.reuse import SuggestionReuse, forget_long_lines
from completer.records import WORK_FIELDS, AnswerRecord, EngineWork

from . import notebooks
from .documents import DocumentStore
from .options import EnginePlacement, ServerOptions, ServerSwitches, apply_client_settings
from .pacing import Pacer
from .transport import is_pipe_or_socket, serve_stdio, serve_tcp

if TYPE_CHECKING:
    from .inline_completion import InFlight

log = logging.getLogger(__name__)

STATUS_NOTIFICATION = "completer/status"


REQUEST_LOG_SIZE = 5_000  # ~1 KB a record: ~5 MB, and more than a replayed session's requests
# A failed load is tried again by a later request (the model directory may come back, a full disk be
# freed), first after LOAD_RETRY_S, then each time twice as long, up to LOAD_RETRY_MAX_S.
LOAD_RETRY_S = 2.0
LOAD_RETRY_MAX_S = 60.0


class RequestLog:
    """The most recent inlineCompletion answers (completer.records.AnswerRecord), for the replay bench
    (completer/stats {"requests": true}). Bounded: the oldest records go first."""

    def __init__(self, size: int = REQUEST_LOG_SIZE):
        self.records: deque[AnswerRecord] = deque(maxlen=size)

    def add(self, record: AnswerRecord) -> None:
        self.records.append(record)


@dataclass
class Counters:
    """What the server did so far (completer/stats "counters")."""
    requests: int = 0
    answered: int = 0
    empty: int = 0
    cancelled: int = 0
    stale: int = 0
    errors: int = 0
    accepted: int = 0
    shown: int = 0
    partially_accepted: int = 0
    reuse_typed_through: int = 0
    reuse_recent: int = 0
    reuse_reconsidered: int = 0
    context_updates: int = 0
    warmups: int = 0
    unavailable: int = 0
    prefetched: int = 0
    recycled: int = 0
    debounced: int = 0


@dataclass
class EngineTotals(EngineWork):
    """Engine work summed over answered requests (completer/stats "engine"; the replay bench reads it)."""
    engine_requests: int = 0

    def add(self, stats: EngineWork) -> None:
        self.engine_requests += 1
        for name in WORK_FIELDS:
            setattr(self, name, getattr(self, name) + getattr(stats, name))


class CompleterProtocol(LanguageServerProtocol):
    """Text and notebook sync go to our DocumentStore (see documents.py for why not pygls' workspace,
    notebooks.py for how a notebook is kept)."""

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

    def _handle_notification(self, method_name: str, params) -> None:
        """pygls 2.1 files each notification's future in _request_futures under a fresh id and never
        takes it out (only answered requests are): ~0.6 KB kept per keystroke's didChange, most of a
        soak's steady memory growth. Take out what this notification added once it is done."""
        before = set(self._request_futures)
        super()._handle_notification(method_name, params)
        for msg_id in set(self._request_futures) - before:
            self._request_futures[msg_id].add_done_callback(
                lambda _future, msg_id=msg_id: self._request_futures.pop(msg_id, None))

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

    @lsp_method(types.NOTEBOOK_DOCUMENT_DID_OPEN)
    def lsp_notebook_document__did_open(self, params: types.DidOpenNotebookDocumentParams):
        notebooks.opened(self._server, params)
        yield from ()

    @lsp_method(types.NOTEBOOK_DOCUMENT_DID_CHANGE)
    def lsp_notebook_document__did_change(self, params: types.DidChangeNotebookDocumentParams):
        notebooks.changed(self._server, params)
        yield from ()

    @lsp_method(types.NOTEBOOK_DOCUMENT_DID_CLOSE)
    def lsp_notebook_document__did_close(self, params: types.DidCloseNotebookDocumentParams):
        notebooks.closed(self._server, params.notebook_document.uri)
        yield from ()

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams):
        if self._server.recorder:
            self._server.recorder.closed(params.text_document.uri)
        self._server.document_closed(params.text_document.uri)
        yield from ()


def _change_record(change) -> list:
    """A content change as the session format stores it: [sl, sc, el, ec, text], None for a full text."""
    if isinstance(change, types.TextDocumentContentChangePartial):
        r = change.range
        return [r.start.line, r.start.character, r.end.line, r.end.character, change.text]
    return [None, None, None, None, change.text]


class CompleterServer(LanguageServer):
    def __init__(self, options: ServerOptions, placement: EnginePlacement = EnginePlacement(),
                 record_dir: str | None = None):
        super().__init__("completer", __version__, protocol_cls=CompleterProtocol,
                         notebook_document_sync=notebooks.SYNC)
        self.store = DocumentStore()
        self.options = options  # engine, completion settings, switches; client settings replace it
        self.placement = placement
        self.engine_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="completer-engine")
        self._completer_future: asyncio.Future | None = None
        self.completer: Completer | None = None
        self.load_error: str | None = None
        self._load_retry_at = 0.0  # time.monotonic() after which a failed load is tried again
        self._load_retry_s = LOAD_RETRY_S
        self.pending: dict[str, threading.Event] = {}  # uri -> cancel event of the request in flight
        self.inflight: dict[str, InFlight] = {}  # uri -> the generation running for it
        self.last_latency_ms: float | None = None
        self.counters = Counters()
        self.engine_totals = EngineTotals()
        self.reuse = SuggestionReuse() if options.switches.reuse else None
        self._next_item_id = 0
        self._told_unreadable = False  # whether the user was shown that a message could not be read
        self.last_cursor: dict[str, tuple[int, int]] = {}  # uri -> (line, code-point column) of the last request
        self.change_hooks: list = []  # called with (uri, opened) after each didOpen / didChange
        self.ring = None  # ContextRing over the workspace, set at initialize (None: no cross-file context)
        self.workspace_root = ""  # its path, set at initialize: the scope of shared KV on multi-tenant backends
        self.context_tasks: dict[str, asyncio.Task] = {}
        self.request_log = RequestLog()
        self.pacer = Pacer()
        self.background_tasks: set[asyncio.Task] = set()
        self.engine_available = True  # False while a daemon engine is away (status says so once)
        self.withheld_languages: set[str | None] = set()  # languages the model was not trained on, said once
        self.recorder = None
        if record_dir:
            from .recording import Recorder

            self.recorder = Recorder(record_dir)

    @property
    def settings(self) -> CompletionSettings:
        return self.options.settings

    @property
    def switches(self) -> ServerSwitches:
        return self.options.switches

    def apply_client_settings(self, raw) -> bool:
        """initializationOptions or a didChangeConfiguration section; True if the engine must reload."""
        before = self.options
        self.options = apply_client_settings(before, raw)
        if self.options.switches.reuse and self.reuse is None:
            self.reuse = SuggestionReuse()
        elif not self.options.switches.reuse:
            self.reuse = None
        if self.completer is not None:
            self.completer.settings = self.options.settings
        if self.settings.prompt_budget != before.settings.prompt_budget:  # the chunks were sized for the old one
            for uri in list(self.store.documents):
                self.document_changed(uri)
        return self.options.engine != before.engine

    def start_io(self, stdin=None, stdout=None) -> None:
        """stdio, read by the event loop when stdin is a pipe or socket (see transport.py)."""
        if is_pipe_or_socket(stdin or sys.stdin.buffer):
            serve_stdio(self, stdin, stdout)
        else:
            super().start_io(stdin, stdout)

    def start_tcp(self, host: str, port: int, token: str = "", ready=None) -> None:  # type: ignore[override]
        """TCP for one client that knows `token` (see transport.py)."""
        serve_tcp(self, host, port, token, ready)

    # -- engine ---------------------------------------------------------------------------------

    def start_loading(self) -> None:
        if self._completer_future is None:
            loop = asyncio.get_running_loop()
            self._completer_future = loop.run_in_executor(self.engine_executor, self._load)
            self._completer_future.add_done_callback(self._loaded)

    def _load(self) -> Completer:
        placement = self.placement
        if placement.mode == "inproc":
            from completer.engines.loading import load_engine

            engine = load_engine(self.options.engine)
        else:
            from completer.serving.remote_engine import RemoteEngine

            engine = RemoteEngine(self.options.engine, placement.mode, placement.socket,
                                  idle_exit_s=placement.idle_exit_s)
        return Completer(engine, self.settings)

    def _loaded(self, fut: asyncio.Future) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("engine failed to load (tried again in %.0f s, on a request): %s", self._load_retry_s,
                      self.load_error)
            self._load_retry_at = time.monotonic() + self._load_retry_s
            self._load_retry_s = min(2 * self._load_retry_s, LOAD_RETRY_MAX_S)
            self.send_status("error", message=f"completer could not load its model: {self.load_error}")
            return
        self._load_retry_s = LOAD_RETRY_S
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
        old, self.completer = self.completer, None
        for cancel in self.pending.values():
            cancel.set()
        if old is not None:
            self.engine_executor.submit(old.engine.close)  # after the request running now, if any
        self._load_anew()

    def _load_anew(self) -> None:
        self.load_error, self._completer_future = None, None
        self.send_status("loading")
        self.start_loading()

    async def get_completer(self) -> Completer | None:
        """The loaded completer, waiting for the load if it is still running; None if loading failed
        (and a failed load is started again once its retry time has come)."""
        if self.load_error is not None and time.monotonic() >= self._load_retry_at:
            self._load_anew()  # nothing loaded, so nothing to cancel or close; this request waits for it
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
            "model": info.get("model_dir", self.options.engine.model or ""),
            "backend": info.get("backend", self.options.engine.backend),
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

    def document_closed(self, uri: str) -> None:
        """Forget everything kept per document (a long session opens thousands)."""
        self.store.close(uri)
        if self.reuse is not None:
            self.reuse.forget(uri)
        forget_long_lines()  # caches of the last long lines split or converted, whichever document's
        self.pacer.forget(uri)
        self.last_cursor.pop(uri, None)
        task = self.context_tasks.pop(uri, None)
        if task is not None:
            task.cancel()

    def report_server_error(self, error: Exception, source) -> None:
        """pygls shows a failed notification handler (didChange, say) to the user as an error message
        and keeps no trace of it; a request's failure goes back in its answer. Log both, with the
        traceback, so that the server's log says what went wrong with the user's text. A message that
        cannot be read comes here too (the transport has logged it already); it is shown once."""
        if source in (FeatureNotificationError, FeatureRequestError):
            trace = getattr(error, "data", None)
            trace = "".join(trace.get("traceback", ())) if isinstance(trace, dict) else ""
            log.error("%s: %s\n%s", source.__name__, error, trace,
                      exc_info=error if error.__traceback__ is not None else None)
        elif source is JsonRpcException:  # what the transport could not read
            # A client whose requests do not match the LSP types sends one at each keystroke: the user
            # is told once, each request still gets its Invalid Params, the rest goes to the log.
            if self._told_unreadable:
                return
            self._told_unreadable = True
        super().report_server_error(error, source)

    def new_item_id(self) -> str:
        self._next_item_id += 1
        return f"c{self._next_item_id}"

    def note_latency(self, started: float) -> None:
        self.last_latency_ms = (time.perf_counter() - started) * 1000


def create_server(options: ServerOptions = ServerOptions(), placement: EnginePlacement = EnginePlacement(),
                  record_dir: str | None = None) -> CompleterServer:
    from . import (
        accept,
        completion_fallback,
        configuration,
        context_updates,
        file_operations,
        inline_completion,
        lifecycle,
        stats,
        workspace_folders,
    )

    server = CompleterServer(options, placement, record_dir)
    for feature in (lifecycle, configuration, inline_completion, completion_fallback, accept, stats, context_updates,
                    workspace_folders, file_operations):
        feature.register(server)
    return server
