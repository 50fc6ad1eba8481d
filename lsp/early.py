"""Early answers: the model starts on a keystroke's didChange, before the editor asks.

VS Code asks for inline completions only 50 ms after the last key (a fixed debounce of its own,
BENCHMARKS.md), and the model's time came after that. The didChange it sends at once says where the
cursor is (just after the change's text), so the model starts there; the request that comes for
exactly that document and place takes the run's result through the usual answer (gate, reuse,
prefetch), and is answered when it arrives if the model is done by then. An editor that asks at once
(the Neovim plugin) takes the run over as it is, so it costs nothing there.

A run starts only where the request would have asked the model: not when a kept suggestion answers
the place (typed through it, or a recent one), not while a generation for the document still runs
(its request decides whether to recycle it), not while typing outruns the model (the pacer's
debounce would wait), and only for clients that show inline completions. It stands where a request
stood before it: it cancels what was pending for the document (a prefetch for a state the user did
not reach), and any request for another document version or place cancels it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from completer.completion.pipeline import CompletionRequest, CompletionResult

from .documents import prompt_path
from .inflight import InFlight

log = logging.getLogger(__name__)


@dataclass
class Early:
    request: CompletionRequest  # its document (the store's snapshot, compared by identity) and place
    cancel: threading.Event
    future: asyncio.Future


def schedule(ls, uri: str, opened: bool) -> None:
    """After a didChange (a change hook): start the model at the end of the change, if worth it."""
    doc = ls.store.get(uri)
    if opened or doc is None or doc.edit_end is None or not _wanted(ls, uri):
        return
    line, character = doc.edit_end
    if line >= len(doc.lines) or character > len(doc.lines[line].rstrip("\r\n")):
        return
    reconsider = ls.completer.reconsider if ls.switches.reconsider else None
    if ls.reuse.lookup(uri, doc.lines, line, character, reconsider, peek=True) is not None:
        return  # a kept suggestion will answer the request
    if _leaves_running(ls, uri, doc.lines, line, character):
        return
    pending = ls.pending.get(uri)
    if pending is not None:
        pending.set()
    completer = ls.completer
    request = CompletionRequest(doc.lines, line, character, path=prompt_path(uri), language_id=doc.language_id,
                                session_key=uri, cache_scope=ls.workspace_root,
                                syntax=doc.snapshot_at((line, character)), context=doc.context,
                                open_files=doc.open_files)
    cancel = threading.Event()
    ls.pending[uri] = cancel
    # In flight like a request's generation: the next key's request takes it over if the user only
    # typed what it has produced (in-flight recycling), and no run starts beside it.
    flight = InFlight(doc.lines, line, character, cancel)

    def work() -> CompletionResult | None:
        return None if cancel.is_set() else completer.complete(request, cancel, flight.generated.append)

    flight.future = asyncio.get_running_loop().run_in_executor(ls.engine_executor, work)
    ls.inflight[uri] = flight

    def done(_) -> None:
        ls.release_pending(uri, cancel)
        if ls.inflight.get(uri) is flight:
            del ls.inflight[uri]

    flight.future.add_done_callback(done)
    ls.early[uri] = Early(request, cancel, flight.future)
    ls.counters.early_started += 1
    log.debug("early start %s:%d:%d (version %d)", uri, line, character, doc.version)


def _wanted(ls, uri: str) -> bool:
    text_document = getattr(ls.client_capabilities, "text_document", None)
    if not ls.switches.early or ls.reuse is None or ls.completer is None:
        return False
    if getattr(text_document, "inline_completion", None) is None:
        return False  # the client asks for completion items, when it does
    return not (ls.switches.debounce and ls.pacer.debounce_s(uri))


def _leaves_running(ls, uri: str, lines: Sequence[str], line: int, character: int) -> bool:
    """Whether a generation still running for the document is left to the next request: a request's
    (that request's successor decides), or an early one whose text the user is typing (recycled)."""
    flight = ls.inflight.get(uri)
    if flight is None or flight.future is None or flight.future.done():
        return False
    mine = ls.early.get(uri)
    return mine is None or mine.future is not flight.future or bool(flight.continued_by(lines, line, character))


def take(ls, uri: str, lines: Sequence[str], line: int, character: int) -> Early | None:
    """The run started for exactly this document and place, if any. Any other is the request's to
    cancel or recycle, as a generation of an earlier request would be."""
    early = ls.early.pop(uri, None)
    if early is None or early.cancel.is_set():
        return None
    r = early.request
    return early if r.lines is lines and (r.line, r.character) == (line, character) else None


async def result_of(early: Early) -> CompletionResult | None:
    """Its result, or None where the request should ask the model itself."""
    try:
        result = await asyncio.shield(early.future)
    except asyncio.CancelledError:
        raise  # the editor cancelled its request; the run goes on until the next request cancels it
    except Exception:
        log.exception("early completion failed")
        return None
    if result is None or result.finish_reason == "cancelled" or early.cancel.is_set():
        return None
    return result


def register(server) -> None:
    server.change_hooks.append(schedule)
