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
import time
from dataclasses import dataclass

from lsprotocol import types
from pygls.exceptions import JsonRpcRequestCancelled
from pygls.lsp.client import LanguageClient

from .prompt import split_lines


def utf16_len(s: str) -> int:
    return len(s) + sum(1 for ch in s if ord(ch) > 0xFFFF)


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
        self.log_path = log_path
        self._stderr_task: asyncio.Task | None = None
        self._ids = itertools.count(1_000_000)  # our own ids, so a request can be cancelled by id

        @self.client.feature("completer/status")
        def on_status(params):
            self.status = {k: getattr(params, k, None) for k in ("state", "model", "backend", "device",
                                                                   "lastLatencyMs", "message")}

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self, initialization_options: dict | None = None, open_document: bool = True) -> None:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        await self.client.start_io(*self.server_cmd, env=env)
        self._stderr_task = asyncio.create_task(self._drain_stderr())
        caps = types.ClientCapabilities(general=types.GeneralClientCapabilities(
            position_encodings=[types.PositionEncodingKind.Utf16]))
        await self.client.initialize_async(types.InitializeParams(
            capabilities=caps, process_id=os.getpid(), initialization_options=initialization_options))
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
        """Wait for the server to report its model loaded (or failed)."""
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
        cur = self.lines[line]
        pos = types.Position(line=line, character=utf16_len(cur[:character]))
        new = split_lines(cur[:character] + text + cur[character:])
        if line < len(self.lines) - 1 and new[-1] == "":  # the line kept its break: no new last line
            new.pop()
        self.lines[line:line + 1] = new
        self.version += 1
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=self.uri, version=self.version),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(start=pos, end=pos), text=text)]))
        added = split_lines(text)
        if len(added) == 1:
            return line, character + len(text)
        return line + len(added) - 1, len(added[-1])

    def send_inline_request(self, line: int, character: int) -> tuple[int, asyncio.Future]:
        """Schedule an inlineCompletion request; returns its id (for cancel) and the future."""
        msg_id = next(self._ids)
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=self.uri),
            position=types.Position(line=line, character=utf16_len(self.lines[line][:character])),
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
        items = getattr(result, "items", None) or (result if isinstance(result, (list, tuple)) else [])
        if not items:
            return Suggestion("", None, latency)
        item = items[0]
        text = item.insert_text if isinstance(item.insert_text, str) else item.insert_text.value
        return Suggestion(text, item, latency)

    async def stats(self, requests: bool = False) -> dict:
        """The server's completer/stats: counters and engine totals (and its request log)."""
        result = await self.client.protocol.send_request_async("completer/stats",
                                                               {"requests": True} if requests else None)
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
