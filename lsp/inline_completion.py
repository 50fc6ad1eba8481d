"""textDocument/inlineCompletion: ghost text at the cursor.

The answer is one item whose range is empty at the cursor and whose insertText is the text to add,
which satisfies VS Code's rule that the text in the range must be a prefix of insertText. A newer
request for the same document cancels the one in flight (editors send one per keystroke), and an
answer computed for an older version of the document is dropped. A request whose only change is
typing what the running generation has already produced takes that generation over instead
(in-flight recycling); a cancelled generation runs on for RECYCLE_GRACE_S for that reason.

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

from completer.completion import CompletionRequest
from completer.lines import line_body, to_client_units, to_codepoints
from completer.reuse import typed_since

from . import prefetch
from .accept import ACCEPT_COMMAND

log = logging.getLogger(__name__)

EMPTY = types.InlineCompletionList(items=[])


def _relative_path(uri: str) -> str:
    return uri.rsplit("/", 1)[-1] or "untitled"


async def complete_inline(ls, params: types.InlineCompletionParams) -> types.InlineCompletionList:
    started = time.perf_counter()
    ls.counters["requests"] += 1
    uri = params.text_document.uri
    ls.pacer.request(uri, started)
    doc = ls.store.get(uri)
    pos = params.position
    version = doc.version if doc is not None else -1
    trigger = int(params.context.trigger_kind) if params.context else 2
    rid = ls.recorder.request(uri, version, pos.line, pos.character, trigger) if ls.recorder else 0
    spent: dict[str, float] = {}  # where the milliseconds went, for the request log

    def done(kind: str, lines=None, line: int = 0, character: int = 0, text: str = "", stats=None,
             replace_to: int | None = None):
        """Count, log and record one answer; `kind` says who answered (see RequestLog)."""
        ms = (time.perf_counter() - started) * 1000
        answer = _answer(ls, lines, line, character, text, replace_to) if text else EMPTY
        ls.request_log.add(version, pos.line, pos.character, kind, ms, stats, spent)
        if ls.recorder:
            ls.recorder.answer(rid, text, ms, answer.items[0].command.arguments[0] if text else None)
        return answer

    if doc is None:
        log.info("inlineCompletion for a document that is not open: %s", uri)
        ls.counters["empty"] += 1
        return done("not_open")
    if pos.line < 0 or pos.line >= len(doc.lines) or pos.character < 0:
        ls.counters["empty"] += 1
        return done("invalid")
    line, character = doc.clamp(pos.line, pos.character, ls.store.encoding)
    ls.last_cursor[uri] = (line, character)
    real_lines, context = doc.lines, doc.context  # immutable snapshots
    lines = real_lines
    syntax = None  # the tree, read after reuse misses (reuse needs none) and before the first await
    selected = _selected_completion(ls, params, real_lines, line)
    if selected is not None:  # the document as if the widget's selected item were accepted
        start, end, item_text = selected
        body = line_body(real_lines[line])
        lines = list(real_lines)
        lines[line] = body[:start] + item_text + body[end:] + real_lines[line][len(body):]
        character = start + len(item_text)

    flight = ls.inflight.get(uri)
    typed = _continues(flight, lines, line, character) if selected is None and ls.recycle else None
    if not typed:  # cancel-previous: the engine stops within one decode step
        for event in (ls.pending.get(uri), flight.cancel if flight else None):
            if event is not None:
                event.set()

    if ls.reuse is not None and selected is None:  # a suggestion that is still valid answers without the model
        t_reuse = time.perf_counter()
        hit = ls.reuse.lookup(uri, lines, line, character)
        spent["reuse"] = (time.perf_counter() - t_reuse) * 1000
        if hit is not None:
            text, kind = hit
            if typed:
                flight.cancel.set()
            ls.counters[f"reuse_{kind}"] += 1
            ls.note_latency(started)
            return done(kind, lines, line, character, text)

    if selected is None:
        t_parse = time.perf_counter()
        syntax = doc.snapshot  # of real_lines: nothing has awaited since they were read
        spent["parse"] = (time.perf_counter() - t_parse) * 1000
    if typed:  # the running generation already produced what the user typed: take it over
        flight.claimed = True
        try:
            old = await asyncio.shield(flight.future)
        except Exception:  # it failed: ask the model afresh below
            old = None
        current = ls.store.get(uri)
        if current is None or current.version != version or current.lines is not real_lines:
            ls.counters["stale"] += 1  # the user moved on while we waited
            return done("stale")
        if old is not None and old.text.startswith(typed) and len(old.text) > len(typed):
            rest = old.text[len(typed):]
            ls.counters["recycled"] += 1
            ls.record_stats(old.stats)
            ls.note_latency(started)
            if ls.reuse is not None:
                ls.reuse.remember(uri, lines, line, character, rest)
            return done("recycled", lines, line, character, rest, old.stats)

    cancel = threading.Event()
    ls.pending[uri] = cancel
    delay = ls.pacer.debounce_s(uri) if ls.debounce else 0.0
    if delay:  # typing outruns the model: let a burst pass; a newer request supersedes this one
        spent["debounce"] = delay * 1000
        await asyncio.sleep(delay)
        if cancel.is_set():
            ls.release_pending(uri, cancel)
            ls.counters["debounced"] += 1
            return done("debounced")

    completer = await ls.get_completer()
    if completer is None:
        ls.release_pending(uri, cancel)
        ls.counters["errors"] += 1
        return done("error")
    request = CompletionRequest(lines, line, character, path=_relative_path(uri), language_id=doc.language_id,
                                session_key=uri, cache_scope=ls.workspace_root, syntax=syntax, context=context)
    loop = asyncio.get_running_loop()
    flight = InFlight(lines, line, character, cancel)
    submitted = time.perf_counter()
    finished = [0.0]  # when the engine thread was done, to time the hand-back to this coroutine

    def run_completion():
        spent["wait"] = (time.perf_counter() - submitted) * 1000  # behind a prefetch or a cancelled generation
        try:
            return completer.complete(request, cancel, flight.generated.append)
        finally:
            finished[0] = time.perf_counter()

    flight.future = loop.run_in_executor(ls.engine_executor, run_completion)
    ls.inflight[uri] = flight
    flight.future.add_done_callback(lambda _: ls.inflight.pop(uri) if ls.inflight.get(uri) is flight else None)
    try:
        result = await asyncio.shield(flight.future)
        spent["back"] = (time.perf_counter() - finished[0]) * 1000
    except asyncio.CancelledError:  # $/cancelRequest: pygls answers -32800 for us
        # The generation runs on a moment, in case the next keystroke's request continues it.
        loop.call_later(RECYCLE_GRACE_S, lambda: None if flight.claimed else cancel.set())
        ls.counters["cancelled"] += 1
        ls.request_log.add(version, pos.line, pos.character, "cancelled", (time.perf_counter() - started) * 1000)
        if ls.recorder:
            ls.recorder.cancelled(rid)
        raise
    except Exception:
        log.exception("completion failed")
        ls.counters["errors"] += 1
        ls.send_status("error", message="completion failed; see the server log")
        return done("error")
    finally:
        ls.release_pending(uri, cancel)

    if result.finish_reason == "unavailable":  # the daemon or completion server is away; we keep retrying
        ls.counters["unavailable"] += 1
        if ls.engine_available:
            info = completer.engine.describe()
            where = info.get("device") if info.get("backend") == "openai" else "the engine daemon"
            why = str(info.get("status", ""))
            ls.send_status("error", message=f"{where} is unavailable{' (' + why + ')' if why.startswith('down') else ''}; "
                           "retrying")
            ls.engine_available = False
        return done("unavailable")
    if not ls.engine_available:
        ls.engine_available = True
        ls.send_status("ready")
    if cancel.is_set() or result.finish_reason == "cancelled":
        ls.counters["cancelled"] += 1
        return done("cancelled", stats=result.stats)
    current = ls.store.get(uri)
    if current is None or current.version != version or current.lines is not real_lines:
        ls.counters["stale"] += 1
        return done("stale", stats=result.stats)
    ls.note_latency(started)
    ls.pacer.answered(uri, result.timings.get("total_ms", 0.0) / 1000)
    spent.update((key.removesuffix("_ms"), ms) for key, ms in result.timings.items()
                 if key in ("prompt_ms", "prefill_ms", "decode_ms", "post_ms"))
    if ls.reuse is not None and current.context is context and selected is None:  # not stale by a context update
        ls.reuse.remember(uri, lines, line, character, result.text)
    ls.record_stats(result.stats)
    log.debug("%s:%d:%d %r %s", uri, line, character, result.text, result.timings)
    after_response(lambda: ls.send_status("ready"))  # carries the latency; the answer goes first
    if not result.text:
        ls.counters["empty"] += 1
        return done("engine", stats=result.stats)
    ls.counters["answered"] += 1
    if selected is None:  # the next suggestion, as if this one were accepted, while the user reads it
        after_response(lambda: prefetch.schedule(ls, uri, doc.language_id, _relative_path(uri), lines, line, character,
                                                 result.text, context, syntax))
    if selected is not None:
        return done("engine", real_lines, line, start, item_text + result.text, result.stats, replace_to=end)
    return done("engine", lines, line, character, result.text, result.stats)


RECYCLE_GRACE_S = 0.05


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


def _continues(flight: InFlight | None, lines, line: int, character: int) -> str | None:
    """The typed text, if this request only typed what the running generation already produced."""
    if flight is None or flight.future is None or flight.future.done() or flight.cancel.is_set():
        return None
    typed = typed_since(flight.lines, flight.line, flight.character, lines, line, character)
    generated = "".join(flight.generated)
    return typed if typed and generated.startswith(typed) and len(generated) > len(typed) else None


def _selected_completion(ls, params, lines, line: int) -> tuple[int, int, str] | None:
    """(start, end, text) in code points of the completion widget's selected item on the cursor line."""
    info = params.context.selected_completion_info if params.context else None
    if info is None or info.range.start.line != line or info.range.end.line != line:
        return None
    body = line_body(lines[line])
    start = to_codepoints(body, info.range.start.character, ls.store.encoding)
    end = to_codepoints(body, info.range.end.character, ls.store.encoding)
    return (start, end, info.text) if start <= end else None


def _answer(ls, lines, line: int, character: int, text: str, replace_to: int | None = None
            ) -> types.InlineCompletionList:
    """One item at the cursor: an empty range (VS Code's prefix rule holds trivially), or from the
    cursor to `replace_to` when the item also replaces text there (a selected completion)."""
    body = line_body(lines[line])
    at = types.Position(line=line, character=to_client_units(body, character, ls.store.encoding))
    to = at if replace_to is None else types.Position(
        line=line, character=to_client_units(body, replace_to, ls.store.encoding))
    item = types.InlineCompletionItem(
        insert_text=text,
        range=types.Range(start=at, end=to),
        command=types.Command(title="Accept completion", command=ACCEPT_COMMAND, arguments=[ls.new_item_id()]),
    )
    return types.InlineCompletionList(items=[item])


def register(server) -> None:
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls, params: types.InlineCompletionParams):
        return await complete_inline(ls, params)
