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
import dataclasses
import logging
import threading

from completer.completion.closers import closers_taken
from completer.completion.pipeline import CompletionRequest
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


def accepted(shown_for: CompletionRequest, text: str, closers: bool = True) -> tuple[list[str], int, int]:
    """The document as if `text` were accepted, and the cursor after it: in place of the closers right
    of the cursor that it runs through, as its item's range says (closers.py), unless `closers` is off."""
    body = line_body(shown_for.lines[shown_for.line])
    taken = closers_taken(text, body[:shown_for.character], body[shown_for.character:]) if closers else 0
    return insert_at(shown_for.lines, shown_for.line, shown_for.character, text, taken)


def schedule(ls, shown_for: CompletionRequest, text: str) -> None:
    """Prefetch after `text` was shown for `shown_for` (its document, cursor and tree)."""
    if not ls.switches.prefetch or ls.reuse is None or ls.completer is None or not text:
        return
    task = asyncio.ensure_future(_prefetch(ls, shown_for, text))
    ls.background_tasks.add(task)
    task.add_done_callback(ls.background_tasks.discard)


async def _prefetch(ls, shown_for: CompletionRequest, text: str) -> None:
    uri = shown_for.session_key
    if ls.pending.get(uri) is not None:  # a real request is already waiting
        return
    cancel = threading.Event()
    ls.pending[uri] = cancel
    completer = ls.completer
    lines, line, character = accepted(shown_for, text, ls.switches.closers)
    request = dataclasses.replace(shown_for, lines=lines, line=line, character=character, syntax=None)

    tree = shown_for.syntax

    def with_tree(req: CompletionRequest) -> CompletionRequest:
        """`req` with the last tree edited to its text (an incremental parse)."""
        nonlocal tree
        if tree is not None:
            tree = reparse(tree, "".join(req.lines))
        return dataclasses.replace(req, syntax=tree)

    def work():
        nonlocal request
        if cancel.is_set():
            return None
        request = with_tree(request)
        result = completer.complete(request, cancel)
        line_done = not request.lines[request.line][request.character:].strip()
        if not result.text and line_done and not cancel.is_set():  # nothing more on this line: the next one
            lines, line, character = after_enter(request.lines, request.line)
            request = with_tree(dataclasses.replace(request, lines=lines, line=line, character=character))
            result = completer.complete(request, cancel)
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
    if doc is None or doc.context is not shown_for.context or ls.reuse is None:
        return
    ls.reuse.remember_recent(uri, request.lines, request.line, request.character, result.text)
    ls.counters.prefetched += 1
