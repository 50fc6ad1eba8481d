"""textDocument/inlineCompletion: ghost text at the cursor.

The answer is one item whose range starts at the cursor and whose insertText is the text to add. The
range is empty, or covers the closers the editor put right of the cursor where the suggestion runs
through them (completion/closers.py): they are a subsequence of insertText and nothing is inserted
left of the cursor, so VS Code shows the item as ghost text in parts around them (its default
inlineSuggest.mode, "subwordSmart"; "prefix" would show nothing for such an item). A request
goes through the stages of design.md's keystroke path, and the first that can answer does:

    reuse     a suggestion still valid (the user typed its start, or a recent one for this place), or
              a withheld one decided on again as the user types it
    recycle   the generation still running for the previous keystroke, if the user only typed
              what it has produced so far (in-flight recycling; a cancelled generation runs on
              for RECYCLE_GRACE_S for that reason)
    debounce  while typing outruns the model, wait a moment; a newer request supersedes this one
    generate  the model, on the engine thread; a newer request for the document cancels it
    answer    drop it if the document moved on, remember it for reuse, prefetch the next one (or,
              after a cold answer from a short prompt, warm the full prompt: context_updates.warm_up)

When the client's completion widget is open, context.selectedCompletionInfo {range, text} says what
accepting its selected item would insert: the suggestion is computed as if it were inserted, and the
item replaces that range with the item's text followed by the suggestion (VS Code shows nothing
otherwise). Such answers skip reuse: they are for a document that does not exist yet.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from lsprotocol import types

from completer.completion.closers import closers_taken
from completer.completion.pipeline import CompletionRequest, CompletionResult
from completer.completion.reuse import typed_into, typed_since
from completer.lines import line_body, to_client_units, to_codepoints
from completer.records import AnswerKind, AnswerRecord, Spent
from completer.syntax import language_for

from . import context_updates, prefetch
from .accept import ACCEPT_COMMAND

log = logging.getLogger(__name__)

EMPTY = types.InlineCompletionList(items=[])
RECYCLE_GRACE_S = 0.05


@dataclass
class InFlight:
    """A generation still running for a document. A later request whose only change is typing what
    it has generated so far takes it over instead of cancelling it (in-flight recycling)."""
    lines: Sequence[str]
    line: int
    character: int
    cancel: threading.Event
    future: asyncio.Future | None = None
    generated: list[str] = field(default_factory=list)  # raw text so far, appended by the engine thread
    claimed: bool = False


@dataclass
class Selected:
    """The completion widget's selected item on the cursor line, in code points."""
    start: int
    end: int
    text: str


@dataclass
class InlineRequest:
    """One inlineCompletion on its way through the stages. `lines` is the document the suggestion is
    for (the real one, or as if the widget's selected item were accepted); `real_lines` the document
    as the request found it, to tell when an answer has gone stale."""
    uri: str  # the document's key in the store (for a notebook cell, its notebook's joined document)
    position: types.Position  # as the client sent it
    started: float
    version: int
    recording_id: int
    doc: object | None  # documents.Document
    real_lines: Sequence[str] = ()
    lines: Sequence[str] = ()
    context: tuple[tuple[str, str], ...] = ()  # the document's context chunks when the request came
    open_files: tuple[tuple[str, str], ...] = ()  # and the other open files, for copies
    line: int = 0  # in the document
    character: int = 0  # code points
    first_line: int = 0  # the document's line that is the client's line 0 (a notebook cell's first line)
    selected: Selected | None = None
    spent: Spent = field(default_factory=Spent)
    engine_done: float = 0.0  # when the engine thread finished, to time the hand-back to the coroutine

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def still_current(self, ls) -> bool:
        current = ls.store.get(self.uri)
        return current is not None and current.version == self.version and current.lines is self.real_lines

    def completion_request(self, ls, syntax) -> CompletionRequest:
        return CompletionRequest(self.lines, self.line, self.character, path=self.doc.name,
                                 language_id=self.doc.language_id, session_key=self.uri,
                                 cache_scope=ls.workspace_root, syntax=syntax, context=self.context,
                                 open_files=self.open_files)


async def complete_inline(ls, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    req = _begin(ls, params)
    if isinstance(req, types.InlineCompletionList):
        return req
    flight = ls.inflight.get(req.uri)
    typed = _continues(flight, req.lines, req.line, req.character) if req.selected is None and ls.switches.recycle \
        else None
    if not typed:  # cancel-previous: the engine stops within one decode step
        for event in (ls.pending.get(req.uri), flight.cancel if flight else None):
            if event is not None:
                event.set()
    answer = _from_reuse(ls, req, flight if typed else None)
    if answer is not None:
        return answer
    syntax = None  # the tree, read after reuse misses (reuse needs none) and before the first await
    if req.selected is None:
        t_parse = time.perf_counter()
        syntax = req.doc.snapshot_at((req.line, req.character))  # of real_lines: nothing has awaited since
        req.spent.parse = (time.perf_counter() - t_parse) * 1000
    if typed:
        answer = await _from_recycled(ls, req, flight, typed)
        if answer is not None:
            return answer
    cancel = threading.Event()
    ls.pending[req.uri] = cancel
    if await _debounced(ls, req, cancel):
        return _finish(ls, req, "debounced")
    return await _generate(ls, req, cancel, syntax)


# -- the stages ---------------------------------------------------------------------------------------

def _begin(ls, params: types.InlineCompletionParams) -> InlineRequest | types.InlineCompletionList:
    """The request in code points, or the empty answer for a document that is not open or a position
    outside it."""
    started = time.perf_counter()
    ls.counters.requests += 1
    pos = params.position
    located = ls.store.locate(params.text_document.uri)
    uri, doc, first = (located.key, located.doc, located.first_line) if located else (params.text_document.uri, None, 0)
    ls.pacer.request(uri, started)
    version = doc.version if doc is not None else -1
    trigger = int(params.context.trigger_kind) if params.context else 2
    rid = ls.recorder.request(uri, version, first + pos.line, pos.character, trigger) if ls.recorder else 0
    req = InlineRequest(uri, pos, started, version, rid, doc, first_line=first)
    if doc is None:
        log.info("inlineCompletion for a document that is not open: %s", uri)
        ls.counters.empty += 1
        return _finish(ls, req, "not_open")
    if pos.line < 0 or pos.line >= located.line_count or pos.character < 0:
        ls.counters.empty += 1
        return _finish(ls, req, "invalid")
    req.line, req.character = doc.clamp(first + pos.line, pos.character, ls.store.encoding)
    ls.last_cursor[uri] = (req.line, req.character)
    req.real_lines = req.lines = doc.lines  # immutable snapshots
    req.context, req.open_files = doc.context, doc.open_files
    req.selected = _selected_completion(ls, params, doc.lines, req.line, first)
    if req.selected is not None:  # the document as if the widget's selected item were accepted
        s = req.selected
        body = line_body(doc.lines[req.line])
        lines = list(doc.lines)
        lines[req.line] = body[:s.start] + s.text + body[s.end:] + doc.lines[req.line][len(body):]
        req.lines, req.character = lines, s.start + len(s.text)
    return req


def _from_reuse(ls, req: InlineRequest, typed_flight: InFlight | None) -> types.InlineCompletionList | None:
    """A suggestion that is still valid answers without the model."""
    if ls.reuse is None or req.selected is not None:
        return None
    t_reuse = time.perf_counter()
    reconsider = ls.completer.reconsider if ls.completer is not None and ls.switches.reconsider else None
    hit = ls.reuse.lookup(req.uri, req.lines, req.line, req.character, reconsider)
    req.spent.reuse = (time.perf_counter() - t_reuse) * 1000
    if hit is None:
        return None
    text, kind = hit
    if typed_flight is not None:
        typed_flight.cancel.set()
    setattr(ls.counters, f"reuse_{kind}", getattr(ls.counters, f"reuse_{kind}") + 1)
    ls.note_latency(req.started)
    return _finish(ls, req, kind, text)


async def _from_recycled(ls, req: InlineRequest, flight: InFlight, typed: str) -> types.InlineCompletionList | None:
    """The running generation already produced what the user typed: take it over."""
    flight.claimed = True
    try:
        old = await asyncio.shield(flight.future)
    except Exception:  # it failed: ask the model afresh, unless the user moved on meanwhile
        old = None
    if not req.still_current(ls):
        ls.counters.stale += 1
        return _finish(ls, req, "stale")
    if old is None or not old.text.startswith(typed) or len(old.text) <= len(typed):
        return None
    # The alternatives the typed text still fits go on being offered for cycling, as in the answer
    # the editor would have shown had the generation finished a key earlier.
    rest, *alternatives = typed_into((old.text, *old.alternatives), typed)
    ls.counters.recycled += 1
    ls.engine_totals.add(old.stats)
    ls.note_latency(req.started)
    if ls.reuse is not None:
        ls.reuse.remember(req.uri, req.lines, req.line, req.character, rest)
    return _finish(ls, req, "recycled", rest, old, tuple(alternatives))


async def _debounced(ls, req: InlineRequest, cancel: threading.Event) -> bool:
    """Typing outruns the model: let a burst pass. True if a newer request superseded this one."""
    delay = ls.pacer.debounce_s(req.uri) if ls.switches.debounce else 0.0
    if not delay:
        return False
    req.spent.debounce = delay * 1000
    await asyncio.sleep(delay)
    if not cancel.is_set():
        return False
    ls.release_pending(req.uri, cancel)
    ls.counters.debounced += 1
    return True


async def _generate(ls, req: InlineRequest, cancel: threading.Event, syntax) -> types.InlineCompletionList:
    """Ask the model on the engine thread, then answer."""
    completer = await ls.get_completer()
    if completer is None:
        ls.release_pending(req.uri, cancel)
        ls.counters.errors += 1
        return _finish(ls, req, "error")
    request = req.completion_request(ls, syntax)
    loop = asyncio.get_running_loop()
    flight = InFlight(req.lines, req.line, req.character, cancel)
    submitted = time.perf_counter()

    def run_completion() -> CompletionResult:
        req.spent.wait = (time.perf_counter() - submitted) * 1000  # behind a prefetch or a cancelled generation
        try:
            return completer.complete(request, cancel, flight.generated.append)
        finally:
            req.engine_done = time.perf_counter()

    flight.future = loop.run_in_executor(ls.engine_executor, run_completion)
    ls.inflight[req.uri] = flight
    flight.future.add_done_callback(lambda _: ls.inflight.pop(req.uri) if ls.inflight.get(req.uri) is flight else None)
    try:
        result = await asyncio.shield(flight.future)
        req.spent.back = (time.perf_counter() - req.engine_done) * 1000
    except asyncio.CancelledError:  # $/cancelRequest: pygls answers -32800 for us
        # The generation runs on a moment, in case the next keystroke's request continues it.
        loop.call_later(RECYCLE_GRACE_S, lambda: None if flight.claimed else cancel.set())
        ls.counters.cancelled += 1
        ls.request_log.add(AnswerRecord(req.version, req.position.line, req.position.character, "cancelled",
                                        req.elapsed_ms()))
        if ls.recorder:
            ls.recorder.cancelled(req.recording_id)
        raise
    except Exception:
        log.exception("completion failed")
        ls.counters.errors += 1
        ls.send_status("error", message="completion failed; see the server log")
        return _finish(ls, req, "error")
    finally:
        ls.release_pending(req.uri, cancel)
    return _answer(ls, req, completer, request, result, cancel)


def _answer(ls, req: InlineRequest, completer, request: CompletionRequest, result: CompletionResult,
            cancel: threading.Event) -> types.InlineCompletionList:
    """What the model said, unless the engine was away, the request was cancelled or the document
    moved on; remembered for reuse, and the next suggestion prefetched."""
    if result.finish_reason == "unavailable":  # the daemon or completion server is away; we keep retrying
        ls.counters.unavailable += 1
        if ls.engine_available:
            info = completer.engine.describe()
            where = info.get("device") if info.get("backend") == "openai" else "the engine daemon"
            why = str(info.get("status", ""))
            ls.send_status("error", message=f"{where} is unavailable{' (' + why + ')' if why.startswith('down') else ''}; "
                           "retrying")
            ls.engine_available = False
        return _finish(ls, req, "unavailable")
    if not ls.engine_available:
        ls.engine_available = True
        ls.send_status("ready")
    if cancel.is_set() or result.finish_reason == "cancelled":
        ls.counters.cancelled += 1
        return _finish(ls, req, "cancelled", result=result)
    if not req.still_current(ls):
        ls.counters.stale += 1
        return _finish(ls, req, "stale", result=result)
    if result.withheld == "language":
        language = language_for(req.doc.language_id, req.uri)
        if language not in ls.withheld_languages:  # say once why this language gets no suggestions
            ls.withheld_languages.add(language)
            ls.send_status("ready", message=f"no suggestions in {language}: the model was not trained on it")
    ls.note_latency(req.started)
    ls.pacer.answered(req.uri, result.timings.total_ms / 1000)
    t = result.timings
    spent = req.spent
    spent.prompt, spent.prefill, spent.decode, spent.post, spent.rerank = (t.prompt_ms, t.prefill_ms, t.decode_ms,
                                                                           t.post_ms, t.rerank_ms)
    current = ls.store.get(req.uri)
    if ls.reuse is not None and current.context is request.context and req.selected is None:  # not stale by a context update
        held = result.held if ls.switches.reconsider else None
        ls.reuse.remember(req.uri, req.lines, req.line, req.character, result.text, held)
    ls.engine_totals.add(result.stats)
    log.debug("%s:%d:%d %r %s", req.uri, req.line, req.character, result.text, t)
    after_response(lambda: ls.send_status("ready"))  # carries the latency; the answer goes first
    warm = result.cold and req.selected is None  # answered from a short prompt: warm the full one instead of prefetching
    if warm:
        after_response(lambda: context_updates.schedule_warm_up(ls, req.uri, req.line, req.character))
    if not result.text:
        ls.counters.empty += 1
        return _finish(ls, req, "engine", result=result)
    ls.counters.answered += 1
    if req.selected is None and not warm:  # the next suggestion, as if this one were accepted, while the user reads it
        after_response(lambda: prefetch.schedule(ls, request, result.text))
    return _finish(ls, req, "engine", result.text, result, result.alternatives)


def _finish(ls, req: InlineRequest, kind: AnswerKind, text: str = "", result: CompletionResult | None = None,
            alternatives: tuple[str, ...] = ()) -> types.InlineCompletionList:
    """Log and record one answer; `kind` says who answered (completer.records.AnswerKind). The
    alternatives follow the suggestion as more items, for the editor to cycle through."""
    ms = req.elapsed_ms()
    answer = types.InlineCompletionList(items=[_item(ls, req, t) for t in (text, *alternatives)]) if text else EMPTY
    record = AnswerRecord(req.version, req.position.line, req.position.character, kind, ms, spent=req.spent)
    if result is not None:
        record.take_work(result.stats)
    ls.request_log.add(record)
    if ls.recorder:
        ls.recorder.answer(req.recording_id, text, ms, answer.items[0].command.arguments[0] if text else None)
    return answer


def after_response(callback) -> None:
    """Run `callback` once the answer is on its way. pygls writes a request's response from the first
    done-callback of the handler's task, so one added now runs after it: a status notification or
    a prefetch (whose prompt building on the engine thread would contend for the GIL) no longer
    delays the answer the editor is waiting for."""
    task = asyncio.current_task()
    if task is None:
        callback()
    else:
        task.add_done_callback(lambda _: callback())


def _continues(flight: InFlight | None, lines, line: int, character: int) -> str | None:
    """The typed text, if this request only typed what the running generation already produced."""
    if flight is None or flight.future is None or flight.future.done() or flight.cancel.is_set():
        return None
    typed = typed_since(flight.lines, flight.line, flight.character, lines, line, character)
    generated = "".join(flight.generated)
    return typed if typed and generated.startswith(typed) and len(generated) > len(typed) else None


def _selected_completion(ls, params, lines, line: int, first_line: int) -> Selected | None:
    """The completion widget's selected item, if it is on the cursor line."""
    info = params.context.selected_completion_info if params.context else None
    if info is None or first_line + info.range.start.line != line or first_line + info.range.end.line != line:
        return None
    body = line_body(lines[line])
    start = to_codepoints(body, info.range.start.character, ls.store.encoding)
    end = to_codepoints(body, info.range.end.character, ls.store.encoding)
    return Selected(start, end, info.text) if start <= end else None


def _item(ls, req: InlineRequest, text: str) -> types.InlineCompletionItem:
    """One item at the cursor: its range is empty, or covers the closers right of the cursor that the
    suggestion runs through (completion/closers.py: `c", 1)` takes the `")` of `f("ab|")`); for a
    selected completion, from its start to its end with the item's text in front of the suggestion."""
    body = line_body(req.real_lines[req.line])
    line = req.line - req.first_line  # the client's
    if req.selected is None:
        at = types.Position(line=line, character=to_client_units(body, req.character, ls.store.encoding))
        taken = closers_taken(text, body[:req.character], body[req.character:]) if ls.switches.closers else 0
        to = types.Position(line=line, character=to_client_units(body, req.character + taken, ls.store.encoding)) \
            if taken else at
    else:
        s = req.selected
        at = types.Position(line=line, character=to_client_units(body, s.start, ls.store.encoding))
        to = types.Position(line=line, character=to_client_units(body, s.end, ls.store.encoding))
        text = s.text + text
    return types.InlineCompletionItem(
        insert_text=text,
        range=types.Range(start=at, end=to),
        command=types.Command(title="Accept completion", command=ACCEPT_COMMAND, arguments=[ls.new_item_id()]),
    )


def register(server) -> None:
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls, params: types.InlineCompletionParams):
        return await complete_inline(ls, params)
