"""Cross-file context, refreshed when the user is idle (Contract 1), then warmed up.

Files enter the context ring when opened, saved, or edited; a document's chosen chunks are
recomputed only after IDLE_S seconds without a change to it, never between two keystrokes, since
any change to them invalidates the cached prompt. Each change is followed by a warm-up at the last
cursor position, which prefills the new prompt (generating nothing) so that the next keystroke
finds it cached (the same warm-up follows a cold answer: inline_completion.py). textDocument/didSave
is handled here too.

Bounded work: the import scan (a full parse of the document, reads of the files it imports:
completion/imports.py) runs on a worker thread, never on the event loop, and not at all for a
document past the parser's size limit (syntax.MAX_PARSE_BYTES); imported files over
imports.MAX_IMPORTED_BYTES are not parsed, and the others only when they changed on disk. A document's task
leaves `context_tasks` when it ends and at didClose (server.document_closed).
"""

from __future__ import annotations

import asyncio
import logging
import threading

from lsprotocol import types
from pygls.uris import to_fs_path

from completer.completion.imports import RESOLVERS, import_definitions
from completer.completion.pipeline import CompletionRequest
from completer.syntax import MAX_PARSE_BYTES

log = logging.getLogger(__name__)

IDLE_S = 0.8
CONTEXT_SHARE = 0.25  # of the prompt budget, in characters at ~4 per token
IMPORT_SHARE = 0.5  # of the context's characters, the most one imported file's declarations take
AROUND_LINES = 4
LOCAL_LINES = 80


def schedule(ls, uri: str, opened: bool = False) -> None:
    if ls.ring is None:
        return
    doc = ls.store.get(uri)
    path = to_fs_path(uri)
    if doc is not None and path and opened:
        ls.ring.note(path, doc.text)
    task = ls.context_tasks.pop(uri, None)
    if task is not None:
        task.cancel()
    try:
        task = asyncio.get_running_loop().create_task(refresh_after_idle(ls, uri))
    except RuntimeError:  # no loop (unit tests calling handlers directly)
        return
    ls.context_tasks[uri] = task
    task.add_done_callback(lambda done: ls.context_tasks.pop(uri, None) if ls.context_tasks.get(uri) is done
                           else None)


async def refresh_after_idle(ls, uri: str) -> None:
    await asyncio.sleep(IDLE_S)
    doc, path = ls.store.get(uri), to_fs_path(uri)
    if doc is None or not path or ls.ring is None:
        return
    withdraw(ls, ls.ring.prune())  # files a .gitignore took out since they were noted
    ls.ring.note(path, doc.text)
    line, character = ls.last_cursor.get(uri, (len(doc.lines) - 1, 0))
    line = min(line, len(doc.lines) - 1)
    around = "".join(doc.lines[max(0, line - AROUND_LINES):line + 1])
    local = "".join(doc.lines[max(0, line - LOCAL_LINES):line + LOCAL_LINES // 4])
    imports = []
    budget = int(ls.settings.prompt_budget * CONTEXT_SHARE * 4)
    language = doc.syntax.language if doc.syntax is not None else None
    snapshot = doc.snapshot if language in RESOLVERS else None
    if snapshot is not None:  # None past MAX_PARSE_BYTES too
        source = snapshot.source
        if len(source) <= MAX_PARSE_BYTES:
            whole_tree = snapshot.tree if snapshot.window is None else None  # a window may miss the imports
            try:
                imports = await asyncio.to_thread(import_definitions, ls.ring.workspace, path, source, language,
                                                  int(budget * IMPORT_SHARE), whole_tree)
            except Exception:  # a grammar or a file system surprise: the context goes on without imports
                log.warning("reading the declarations of %s's imports failed", path, exc_info=True)
            if ls.store.get(uri) is not doc or ls.ring is None:  # closed meanwhile
                return
    chosen = ls.ring.select(path, around, local, budget, imports)
    doc.open_files = ls.ring.open_files(path)  # copies only: no prompt changes, nothing to warm up
    if chosen == doc.context:
        return
    doc.context = chosen
    ls.counters.context_updates += 1
    if ls.reuse is not None:  # suggestions made without this context are stale now
        ls.reuse.forget(uri)
    await warm_up(ls, uri, line, min(character, len(doc.lines[line].rstrip("\r\n"))))


def withdraw(ls, dropped: set[str]) -> None:
    """Files left the ring (ignored, deleted or renamed since): out of every open document's context
    and copy sources now, not at each document's next refresh. The prompts change, so suggestions
    made with them are forgotten."""
    if not dropped:
        return
    for uri, doc in ls.store.documents.items():
        context = tuple(chunk for chunk in doc.context if chunk[0] not in dropped)
        doc.open_files = tuple(item for item in doc.open_files if item[0] not in dropped)
        if context != doc.context:
            doc.context = context
            if ls.reuse is not None:
                ls.reuse.forget(uri)


def schedule_warm_up(ls, uri: str, line: int, character: int) -> None:
    """warm_up in the background (after a cold answer: the full prompt was not cached)."""
    task = asyncio.ensure_future(warm_up(ls, uri, line, character))
    ls.background_tasks.add(task)
    task.add_done_callback(ls.background_tasks.discard)


async def warm_up(ls, uri: str, line: int, character: int) -> None:
    """Prefill the prompt at (line, character) without generating (Completer.warm); a keystroke
    cancels it (cancel-previous) within one piece of the prefill, and finds what was done cached.
    Waits for the model to load and for a request in flight on this document to finish."""
    completer = await ls.get_completer()
    for _ in range(200):
        if ls.pending.get(uri) is None:
            break
        await asyncio.sleep(0.05)
    doc = ls.store.get(uri)
    if completer is None or doc is None or ls.pending.get(uri) is not None:
        return
    line = min(line, len(doc.lines) - 1)  # the document may have changed since the position was taken
    character = min(character, len(doc.lines[line].rstrip("\r\n")))
    cancel = threading.Event()
    ls.pending[uri] = cancel
    request = CompletionRequest(doc.lines, line, character, path=doc.name, language_id=doc.language_id,
                                session_key=uri, cache_scope=ls.workspace_root, syntax=doc.snapshot_at((line, character)),
                                context=doc.context)
    try:
        if await asyncio.get_running_loop().run_in_executor(ls.engine_executor, completer.warm, request, cancel):
            ls.counters.warmups += 1
    except Exception:
        log.warning("context warm-up failed", exc_info=True)
    finally:
        if ls.pending.get(uri) is cancel:
            del ls.pending[uri]


def register(server) -> None:
    server.change_hooks.append(schedule)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    async def did_save(ls, params: types.DidSaveTextDocumentParams):
        doc, path = ls.store.get(params.text_document.uri), to_fs_path(params.text_document.uri)
        if doc is not None and path and ls.ring is not None:
            ls.ring.note(path, doc.text)
