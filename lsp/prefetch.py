"""Prefetch: once a suggestion is shown, compute the next one as if it were accepted.

Tab-Tab chains are then instant: after the accept, the editor's next request finds the prefetched
suggestion among the recent answers (reuse.py) for exactly that document. When the accepted text
completes its line (nothing more to suggest there), the prefetch is for the next line instead: as if
the user also pressed Enter, with the indentation an editor's auto-indent gives (one level deeper
after a line that opens a block). The work runs on the engine thread like any request and is
cancelled by the next real request for the document, so it only uses time the user spends reading.
Only full accepts benefit (or typing exactly the suggestion); a partial accept asks the model.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from completer.completion import CompletionRequest
from completer.lines import insert_at, line_body
from completer.syntax import reparse

log = logging.getLogger(__name__)


BLOCK_OPENERS = (":", "{", "(", "[")


def after_enter(lines, line: int) -> tuple[list[str], int, int]:
    """The document with a line break and auto-indentation after `line` (whose text is complete)."""
    body = line_body(lines[line])
    indent = body[:len(body) - len(body.lstrip(" \t"))]
    if body.rstrip().endswith(BLOCK_OPENERS):
        indent += "\t" if indent.startswith("\t") else " " * 4
    return insert_at(lines, line, len(body), "\n" + indent)


def schedule(ls, uri: str, language_id: str, path: str, lines, line: int, character: int, text: str, context,
             syntax) -> None:
    """Prefetch after `text` was shown at (line, character) of `lines`, whose tree is `syntax`."""
    if not ls.prefetch or ls.reuse is None or ls.completer is None or not text:
        return
    task = asyncio.ensure_future(_prefetch(ls, uri, language_id, path, lines, line, character, text, context,
                                           syntax))
    ls.background_tasks.add(task)
    task.add_done_callback(ls.background_tasks.discard)


async def _prefetch(ls, uri, language_id, path, lines, line, character, text, context, syntax) -> None:
    if ls.pending.get(uri) is not None:  # a real request is already waiting
        return
    cancel = threading.Event()
    ls.pending[uri] = cancel
    virtual, vline, vchar = insert_at(lines, line, character, text)
    completer = ls.completer

    def complete_at(doc_lines, at_line, at_char):
        nonlocal syntax
        if syntax is not None:  # the tree of the shown document, edited: an incremental parse
            syntax = reparse(syntax, "".join(doc_lines))
        request = CompletionRequest(doc_lines, at_line, at_char, path=path, language_id=language_id,
                                    session_key=uri, cache_scope=ls.workspace_root, syntax=syntax,
                                    context=context)
        return completer.complete(request, cancel)

    def work():
        nonlocal virtual, vline, vchar
        if cancel.is_set():
            return None
        result = complete_at(virtual, vline, vchar)
        line_done = not virtual[vline][vchar:].strip()
        if not result.text and line_done and not cancel.is_set():  # nothing more on this line: the next one
            virtual, vline, vchar = after_enter(virtual, vline)
            result = complete_at(virtual, vline, vchar)
        return result

    try:
        result = await asyncio.get_running_loop().run_in_executor(ls.engine_executor, work)
    except Exception:
        log.exception("prefetch failed")
        return
    finally:
        ls.release_pending(uri, cancel)
    if result is None or cancel.is_set() or result.finish_reason == "cancelled" or not result.text:
        return
    doc = ls.store.get(uri)
    if doc is None or doc.context is not context or ls.reuse is None:
        return
    ls.reuse.remember_recent(uri, virtual, vline, vchar, result.text)
    ls.counters["prefetched"] += 1
