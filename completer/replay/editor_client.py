"""A scripted editor: drives a real `completer serve --stdio` over LSP the way an editor does.

It keeps its own copy of the document, sends each keystroke as an incremental didChange, asks for
inline completions, cancels superseded requests and runs the accept command. Used by `completer
demo` (and by the latency replay). Positions are UTF-16, as VS Code sends them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import tempfile
import time
from dataclasses import dataclass

from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled
from pygls.lsp.client import LanguageClient

from completer.lines import insert_at, split_lines, to_client_units

# Loading plus compiling the decode step before serving: 1.5-2 minutes on 2 idle cores, more on a
# busy machine.
STARTUP_TIMEOUT_S = 900.0


def private_log(name: str) -> str:
    """A new log file for a server we start: a unique name, created 0600 and exclusively (mkstemp),
    never a fixed name in the shared temp dir that someone else could plant a symlink at."""
    fd, path = tempfile.mkstemp(prefix=f"completer-{name}-", suffix=".log")
    os.close(fd)
    return path


def first_item(result) -> types.InlineCompletionItem | None:
    """The first item of an inlineCompletion answer (a list or an InlineCompletionList)."""
    items = getattr(result, "items", None) or (result if isinstance(result, (list, tuple)) else [])
    return items[0] if items else None


def item_text(item) -> str:
    return item.insert_text if isinstance(item.insert_text, str) else item.insert_text.value


@dataclass
class Suggestion:
    text: str
    item: types.InlineCompletionItem | None
    latency_ms: float
    cancelled: bool = False


class EditorClient:
    def __init__(self, server_cmd: list[str], uri: str, text: str, language_id: str = "python",
                 log_path: str | None = None):
        self.server_cmd = server_cmd
        self.uri = uri
        self.language_id = language_id
        self.lines = split_lines(text)
        self.version = 1
        self.client = LanguageClient("completer-demo", "1")
        self.status: dict = {}
        self.is_completer = True  # until initialize says otherwise
        self.log_path = log_path
        self._stderr_task: asyncio.Task | None = None
        self._ids = itertools.count(1_000_000)  # our own ids, so a request can be cancelled by id

        @self.client.feature("completer/status")
        def on_status(params):
            self.status = {k: getattr(params, k, None) for k in ("state", "model", "backend", "device",
                                                                   "compile", "lastLatencyMs", "message")}

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, initialization_options: dict | None = None, open_document: bool = True,
                    workspace_root: str | None = None) -> None:
        """Launch and initialize the server; `workspace_root`: the folder URI the editor opened
        (None: a lone file, no workspace)."""
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        await self.client.start_io(*self.server_cmd, env=env)
        self._stderr_task = asyncio.create_task(self._drain_stderr())
        caps = types.ClientCapabilities(general=types.GeneralClientCapabilities(
            position_encodings=[types.PositionEncodingKind.Utf16]))
        folders = [types.WorkspaceFolder(uri=workspace_root, name="workspace")] if workspace_root else None
        result = await self.client.initialize_async(types.InitializeParams(
            capabilities=caps, process_id=os.getpid(), initialization_options=initialization_options,
            root_uri=workspace_root, workspace_folders=folders))
        # Only completer reports completer/status and answers completer/stats; other servers are
        # ready once initialized.
        self.is_completer = bool(result.server_info and result.server_info.name == "completer")
        self.client.initialized(types.InitializedParams())
        if not open_document:
            return
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=self.uri, language_id=self.language_id,
                                                 version=self.version, text=self.text)))

    async def _drain_stderr(self) -> None:
        """pygls pipes the server's stderr and never reads it; a full pipe would block the server."""
        stream = self.client._server.stderr
        sink = open(self.log_path, "ab") if self.log_path else None
        try:
            while chunk := await stream.read(65536):
                if sink:
                    sink.write(chunk)
        finally:
            if sink:
                sink.close()

    async def stop(self) -> None:
        try:
            await asyncio.wait_for(self.client.shutdown_async(None), 5)
            self.client.exit(None)
        except Exception:
            pass
        try:
            await asyncio.wait_for(self.client.stop(), 5)
        except Exception:
            if self.client._server and self.client._server.returncode is None:
                self.client._server.kill()
        if self._stderr_task:
            self._stderr_task.cancel()

    async def wait_ready(self, timeout: float = 60.0) -> None:
        """Wait for the server to report its model loaded (or failed). A server told to compile
        before serving (`--compile on`) needs STARTUP_TIMEOUT_S."""
        if not self.is_completer:
            return
        deadline = time.monotonic() + timeout
        while self.status.get("state") not in ("ready", "error"):
            if time.monotonic() > deadline:
                raise TimeoutError("server did not report ready")
            await asyncio.sleep(0.02)
        if self.status.get("state") == "error":
            raise RuntimeError(f"server failed to load: {self.status.get('message')}")

    # -- editing ---------------------------------------------------------------------------------

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def insert(self, line: int, character: int, text: str) -> tuple[int, int]:
        """Insert at (line, code-point column); returns the new cursor (line, column)."""
        pos = types.Position(line=line, character=to_client_units(self.lines[line], character, "utf-16"))
        self.lines, end_line, end_character = insert_at(self.lines, line, character, text)
        self.version += 1
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=self.uri, version=self.version),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(start=pos, end=pos), text=text)]))
        return end_line, end_character

    def send_inline_request(self, line: int, character: int) -> tuple[int, asyncio.Future]:
        """Schedule an inlineCompletion request; returns its id (for cancel) and the future."""
        msg_id = next(self._ids)
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=self.uri),
            position=types.Position(line=line, character=to_client_units(self.lines[line], character, "utf-16")),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic))
        fut = self.client.protocol.send_request_async(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id)
        return msg_id, fut

    async def complete(self, line: int, character: int, timeout: float | None = None) -> Suggestion:
        """Ask for a suggestion; cancel it (like an editor on the next keystroke) after `timeout`."""
        t0 = time.perf_counter()
        msg_id, fut = self.send_inline_request(line, character)
        try:
            result = await asyncio.wait_for(asyncio.shield(fut), timeout)
        except asyncio.TimeoutError:
            self.client.cancel_request(types.CancelParams(id=msg_id))
            fut.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)
            return Suggestion("", None, (time.perf_counter() - t0) * 1000, cancelled=True)
        except JsonRpcRequestCancelled:
            return Suggestion("", None, (time.perf_counter() - t0) * 1000, cancelled=True)
        latency = (time.perf_counter() - t0) * 1000
        item = first_item(result)
        if item is None:
            return Suggestion("", None, latency)
        return Suggestion(item_text(item), item, latency)

    async def stats(self, requests: bool | int = False) -> dict:
        """The server's completer/stats: counters and engine totals (and its request log: all of it,
        or with an int only that many of the latest records); {} from another server."""
        if not self.is_completer:
            return {}
        result = await self.client.protocol.send_request_async("completer/stats",
                                                               {"requests": requests} if requests else None)
        return _plain(result)

    async def accept(self, suggestion: Suggestion) -> None:
        if suggestion.item is not None and suggestion.item.command is not None:
            cmd = suggestion.item.command
            await self.client.workspace_execute_command_async(
                types.ExecuteCommandParams(command=cmd.command, arguments=list(cmd.arguments or [])))


def _plain(obj):
    """pygls hands back unknown results as namedtuple-like Objects: turn them into dicts."""
    if hasattr(obj, "_asdict"):
        return {k: _plain(v) for k, v in obj._asdict().items()}
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def default_server_cmd(extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "completer", "serve", "--stdio", *extra]
