"""`completer replay`: drive a real language server with typing sessions, like an editor would.

For each keystroke of a session: one incremental didChange, then one inlineCompletion; the request
still in flight when the next keystroke comes is cancelled ($/cancelRequest), and an answer that
still arrives after that is counted stale. Synthetic sessions type their plan and accept a
suggestion the way a user does: after a reaction time, when it matches what they were about to
type (all of it, its first line, or whole words of it). Recorded sessions replay their edits as
recorded and compare the new answers with what the user accepted then.

Time is real (scaled by --speed; pauses capped by --max-pause-ms). The server-side breakdown comes
from the server's request log (completer/stats), matched to requests by document version and
position. Reporting lives in report.py, the records both share in records.py.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass

from lsprotocol import types
from pygls.exceptions import JsonRpcException

from completer.acceptance import decide_accept
from completer.lines import clamp, line_body, replace_range, split_lines, to_client_units
from completer.records import AnswerRecord

from . import auto_pairs
from .editor_client import STARTUP_TIMEOUT_S, EditorClient, first_item, item_text, private_log
from .records import RequestRecord, SessionResult
from .session import Session


@dataclass(frozen=True)
class ReplayOptions:
    speed: float = 1.0  # 2.0 = twice as fast as recorded / planned
    max_pause_ms: float | None = None  # cap every wait (after scaling): thinking pauses cost bench time
    reaction_median_ms: float = 250.0  # from a suggestion appearing to Tab, when it matches
    reaction_sigma: float = 0.3
    accept: bool = True  # synthetic sessions: take matching suggestions
    seed: int = 0  # reaction times
    # None: wait until the server has loaded (and compiled, when told to) before the first key. S: the
    # first key S seconds after the server starts, whatever it is doing, as when an editor opens.
    cold_start_s: float | None = None
    # The workspace folder the editor opens (None: none, so the server keeps no cross-file context).
    # Synthetic sessions' files live under SYNTHETIC_ROOT; those made with other files of their
    # project open (bench/make_sessions.py --neighbors) need it for those files to count.
    workspace_root: str | None = None
    # Synthetic sessions: the editor closes brackets and quotes as they are typed (VS Code's default;
    # auto_pairs.py), and the typist takes a suggestion only where accepting its item leaves the line
    # as planned (its range replaces the closers it passes through).
    auto_close: bool = False


SYNTHETIC_ROOT = "file:///workspace"


def main_open(session: Session) -> dict | None:
    """The open event of the document a synthetic session types into (its plan's); the session's
    other opens are files of the same project the user has open beside it."""
    opened = session.of_kind("open")
    plans = session.of_kind("plan")
    if plans:
        return next((o for o in opened if o["uri"] == plans[0]["uri"]), opened[0] if opened else None)
    return opened[0] if opened else None


class Mirror:
    """The client's copy of one document; positions in the session's encoding."""

    def __init__(self, text: str, encoding: str):
        self.lines = split_lines(text)
        self.encoding = encoding
        self.version = 1

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def to_index(self, line: int, client_units: int) -> int:
        return clamp(self.lines, line, client_units, self.encoding)[1]

    def to_units(self, line: int, index: int) -> int:
        return to_client_units(self.lines[line], index, self.encoding)

    def apply(self, change: list) -> tuple[int, int]:
        """Apply [sl, sc, el, ec, text]; returns the cursor after the inserted text (line, code points)."""
        sl, sc, el, ec, text = change
        if sl is None:
            self.lines = split_lines(text)
            return len(self.lines) - 1, len(line_body(self.lines[-1]))
        start, end = clamp(self.lines, sl, sc, self.encoding), clamp(self.lines, el, ec, self.encoding)
        added = split_lines(self.lines[start[0]][:start[1]] + text)
        self.lines = replace_range(self.lines, start, end, text)
        return start[0] + len(added) - 1, len(added[-1])


class Observer:
    """Watches a replay as a user would (the demo prints it); the default watches nothing."""

    def shown(self, line_no: int, left: str, ghost: str, latency_ms: float | None) -> None:
        pass

    def accepted(self, how: str, text: str) -> None:
        pass


class _Replay:
    """Shared state of one session's replay: the pending request, the ghost text, the clock."""

    def __init__(self, client: EditorClient, session: Session, options: ReplayOptions,
                 observer: Observer | None = None):
        self.observer = observer or Observer()
        self.cursor: tuple[str, int, int] = ("", 0, 0)  # uri, line, code-point column after the last edit
        self.client = client
        self.lsp = client.client
        self.session = session
        self.options = options
        opened = main_open(session)
        self.result = SessionResult(session.name, session.kind, language=opened["language_id"] if opened else "")
        self.t0 = time.perf_counter()
        self.result.started_ms = self.t0 * 1000  # rebased on the server's launch by replay_all
        self.pending: tuple[int, asyncio.Future, RequestRecord] | None = None
        self.ghost = ""  # ghost text on screen now
        self.ghost_replaces = 0  # characters right of the cursor its item replaces (closers it runs through)
        self.answer_replaces = 0  # of the answer next_answer last returned
        self.ghost_since: float | None = None  # when the current ghost lineage appeared (ms)
        self.ghost_reaction = 0.0  # how long the user takes to read it (ms, scaled)
        self._ghost_mark: float | None = None  # for the ghost-time integral
        self.rng = random.Random(f"{options.seed}:{session.name}")
        self.docs: dict[str, Mirror] = {}

    def now(self) -> float:
        return (time.perf_counter() - self.t0) * 1000

    # -- ghost text bookkeeping -----------------------------------------------------------------

    def set_ghost(self, text: str, new_lineage: bool) -> None:
        t = self.now()
        if self._ghost_mark is not None:
            self.result.ghost_ms += t - self._ghost_mark
        self._ghost_mark = t if text else None
        if text and (new_lineage or not self.ghost):
            self.ghost_since = t
            self.ghost_reaction = self.reaction() / self.options.speed
            self.result.shown += 1
            uri, line, col = self.cursor
            if uri in self.docs:
                last = self.result.requests[-1] if self.result.requests else None
                left = self.docs[uri].lines[line][:col].rstrip("\r\n")
                self.observer.shown(line, left, text, last.latency_ms if last else None)
        if not text:
            self.ghost_since = None
        self.ghost = text

    def finish(self) -> None:
        self.set_ghost("", False)
        self.result.duration_ms = self.now()

    # -- LSP traffic ------------------------------------------------------------------------------

    def open(self, uri: str, language_id: str, text: str, version: int = 1) -> None:
        mirror = self.docs[uri] = Mirror(text, self.session.encoding)
        mirror.version = version
        self.lsp.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id=language_id, version=version, text=text)))

    def change(self, uri: str, changes: list[list], version: int | None = None) -> tuple[int, int]:
        self.cancel_pending()  # the editor drops the request for the old text as the text changes
        mirror = self.docs[uri]
        mirror.version = version if version is not None else mirror.version + 1
        cursor = (0, 0)
        content = []
        for c in changes:
            if c[0] is None:
                content.append(types.TextDocumentContentChangeWholeDocument(text=c[4]))
            else:
                content.append(types.TextDocumentContentChangePartial(
                    range=types.Range(start=types.Position(line=c[0], character=c[1]),
                                      end=types.Position(line=c[2], character=c[3])), text=c[4]))
            cursor = mirror.apply(c)
        self.cursor = (uri, *cursor)
        self.lsp.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=mirror.version),
            content_changes=content))
        self.result.keystrokes += 1
        return cursor

    def request(self, uri: str, line: int, character: int) -> RequestRecord:
        """Send an inlineCompletion at a client position; the one in flight is cancelled first."""
        self.cancel_pending()
        mirror = self.docs[uri]
        self.cursor = (uri, line, mirror.to_index(line, character))  # where the ghost text will show
        record = RequestRecord(self.now(), mirror.version, line, character)
        msg_id = next(self.client._ids)
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri), position=types.Position(line=line, character=character),
            context=types.InlineCompletionContext(trigger_kind=types.InlineCompletionTriggerKind.Automatic))
        fut = self.lsp.protocol.send_request_async(types.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id=msg_id)
        fut.add_done_callback(lambda _: setattr(record, "t_answer", self.now()))
        self.pending = (msg_id, fut, record)
        self.result.requests.append(record)
        return record

    def cancel_pending(self) -> None:
        if self.pending is None:
            return
        msg_id, fut, record = self.pending
        self.pending = None
        if fut.done():  # it arrived in time, but the user acted before looking
            self.take_answer(fut, record)
            return
        record.outcome = "cancelled"
        self.lsp.cancel_request(types.CancelParams(id=msg_id))

        def late(f: asyncio.Future) -> None:  # an answer after the text moved on is stale
            if not f.cancelled() and f.exception() is None and _first_text(f.result()):
                record.outcome = "stale"
        fut.add_done_callback(late)

    def deadline(self, ms: float) -> float:
        """perf_counter time after `ms` of session time."""
        return time.perf_counter() + self.scaled(ms) / 1000

    async def next_answer(self, deadline: float) -> str | None:
        """Wait until a suggestion arrives (its text, "" for an empty answer) or the deadline (None)."""
        while True:
            if self.pending is not None and not self.pending[1].done():
                await asyncio.wait({self.pending[1]}, timeout=max(0.0, deadline - time.perf_counter()))
            if self.pending is not None and self.pending[1].done():
                _, fut, record = self.pending
                self.pending = None
                text = self.take_answer(fut, record)
                if text is not None:
                    return text
                continue
            left = deadline - time.perf_counter()
            if left > 0:
                await asyncio.sleep(left)
            return None

    async def pass_time(self, ms: float) -> None:
        """Let session time pass, showing what arrives meanwhile (recorded replays)."""
        deadline = self.deadline(ms)
        while (text := await self.next_answer(deadline)) is not None:
            self.set_ghost(text, new_lineage=True)

    def take_answer(self, fut: asyncio.Future, record: RequestRecord) -> str | None:
        record.latency_ms = (record.t_answer if record.t_answer is not None else self.now()) - record.t_sent
        try:
            text = _first_text(fut.result())
        except JsonRpcException:
            record.outcome, record.latency_ms = "cancelled", None
            return None
        except Exception:
            record.outcome = "error"
            return None
        record.text = text
        record.command = _first_command(fut.result())
        record.replaces = self.answer_replaces = self._replaces(fut.result(), record)
        record.outcome = "answered" if text else "empty"
        return text

    def _replaces(self, result, record: RequestRecord) -> int:
        """How many characters right of the cursor the first item's range covers (code points)."""
        item = first_item(result)
        r = getattr(item, "range", None)
        uri = self.cursor[0]
        if r is None or uri not in self.docs or r.start.line != record.line or r.end.line != record.line:
            return 0
        mirror = self.docs[uri]
        return max(0, mirror.to_index(record.line, r.end.character) - mirror.to_index(record.line, r.start.character))

    def scaled(self, ms: float) -> float:
        ms = ms / self.options.speed
        if self.options.max_pause_ms is not None:
            ms = min(ms, self.options.max_pause_ms)
        return ms

    def reaction(self) -> float:
        o = self.options
        return o.reaction_median_ms * math.exp(self.rng.gauss(0.0, o.reaction_sigma))


def _first_text(result) -> str:
    item = first_item(result)
    return item_text(item) if item is not None else ""


def _first_command(result) -> tuple[str, list] | None:
    command = getattr(first_item(result), "command", None)
    return (command.command, list(command.arguments or [])) if command is not None else None


async def replay_synthetic(client: EditorClient, session: Session, options: ReplayOptions,
                           observer: Observer | None = None) -> SessionResult:
    rp = _Replay(client, session, options, observer)
    opened = main_open(session)
    plan = session.of_kind("plan")[0]
    uri, target = plan["uri"], plan["text"]
    beside = [o for o in session.of_kind("open") if o["uri"] != uri]
    for other in beside:  # the files open beside it, opened first, as when the user came to this one
        rp.open(other["uri"], other["language_id"], other["text"], other.get("version", 1))
    rp.open(uri, opened["language_id"], opened["text"], opened.get("version", 1))
    mirror = rp.docs[uri]
    line, col = plan["line"], mirror.to_index(plan["line"], plan["character"])
    pos = 0  # how much of the target is in the document
    res = rp.result
    pending = ""  # --auto-close: the closers the editor put right of the cursor, innermost first

    def edit(text: str, delete: int = 0, replace: int = 0) -> None:
        """Replace `delete` characters left of the cursor and `replace` right of it with `text`."""
        nonlocal line, col
        start = (line, mirror.to_units(line, col - delete))
        end = (line, mirror.to_units(line, col + replace))
        line, col = rp.change(uri, [[*start, *end, text]])

    def type_key(ch: str) -> None:
        """One typed character, as an editor that closes brackets and quotes has it."""
        nonlocal col, pending
        body = line_body(mirror.lines[line])
        if pending[:1] == ch:  # over the editor's own closer: VS Code replaces it with itself
            edit(ch, replace=1)
            pending = pending[1:]
            return
        closer = auto_pairs.closer_for(body[:col], body[col:], target, pos)
        edit(ch + closer)
        if closer:
            col -= len(closer)
            rp.cursor = (uri, line, col)
            pending = closer + pending

    def ask() -> None:
        rp.request(uri, line, mirror.to_units(line, col))

    for op, at, text, delay in plan["steps"]:
        if at < pos:  # an accepted suggestion typed this step, or the start of it
            if op not in ("type", "paste") or at + len(text) <= pos:
                continue
            text, at = target[pos:at + len(text)], pos
        deadline = rp.deadline(delay)
        while True:  # the pause before this key: suggestions arrive, and may be accepted
            how, taken, through = "", "", 0
            if options.accept and rp.ghost and op != "backspace":
                how, taken = decide_accept(rp.ghost, target[pos:])
                through = auto_pairs.passes_through(taken, pending) if how and pending else 0
                if through > rp.ghost_replaces or (how == "full" and through != rp.ghost_replaces):
                    how, taken = "", ""  # accepted, it would leave a closer doubled (or one missing)
            ready_at = (rp.ghost_since or 0.0) + rp.ghost_reaction
            if how and ready_at <= (deadline - rp.t0) * 1000:  # read before the next key would come
                await asyncio.sleep(max(0.0, ready_at - rp.now()) / 1000)
                rp.cancel_pending()
                shown_by = next((r for r in reversed(res.requests) if r.text), None)
                if shown_by is not None:
                    shown_by.accepted, shown_by.accepted_chars = how, len(taken)
                    await _run_accept(client, shown_by)
                edit(taken, replace=through)
                pending = pending[through:]
                pos += len(taken)
                res.accepts += 1
                res.accepted_chars += len(taken)
                rp.observer.accepted(how, taken)
                rp.set_ghost("", False)
                if pos < len(target):
                    ask()
                if at < pos:
                    break
                deadline = rp.deadline(delay)
                continue
            arrived = await rp.next_answer(deadline)
            if arrived is None:
                break
            rp.set_ghost(arrived, new_lineage=arrived != rp.ghost)
            rp.ghost_replaces = rp.answer_replaces
        if at < pos:
            if op not in ("type", "paste") or at + len(text) <= pos:
                continue
            text = target[pos:at + len(text)]
        if op in ("type", "paste"):
            over = pending[:1] == text
            if options.auto_close and op == "type" and len(text) == 1:
                type_key(text)
            else:
                edit(text)
            pos += len(text)
            res.typed_chars += len(text)
            keep = rp.ghost[len(text):] if op == "type" and rp.ghost.startswith(text) else ""
            rp.set_ghost(keep, new_lineage=False)
            if over and keep:  # typed over a closer the suggestion ran through
                rp.ghost_replaces = max(0, rp.ghost_replaces - 1)
        elif op == "typo":
            edit(text)
            rp.set_ghost("", False)
        elif op == "backspace":
            edit("", delete=1)
            rp.set_ghost("", False)
        elif op == "jump":  # looked elsewhere: the ghost text is gone, nothing was asked
            rp.cancel_pending()
            rp.set_ghost("", False)
            continue
        if pos < len(target):
            ask()
    await rp.pass_time(300)  # the last answer lands (the user looks at the result)
    rp.cancel_pending()
    rp.finish()
    for closing in [uri, *(o["uri"] for o in beside)]:
        rp.lsp.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=closing)))
    res.final_chars = len(target)
    res.text_ok = mirror.text == _source_text(session, target)
    return res


def _source_text(session: Session, target: str) -> str:
    """The document as it should end: the opened text with the target typed in."""
    opened, plan = main_open(session), session.of_kind("plan")[0]
    m = Mirror(opened["text"], session.encoding)
    m.apply([plan["line"], plan["character"], plan["line"], plan["character"], target])
    return m.text


async def _run_accept(client: EditorClient, record: RequestRecord) -> None:
    """The accept command of the item on screen (the editor runs it on Tab)."""
    if record.command is None:
        return
    try:
        await asyncio.wait_for(client.client.workspace_execute_command_async(types.ExecuteCommandParams(
            command=record.command[0], arguments=record.command[1])), 5)
    except Exception:  # acceptance telemetry is best effort, as in an editor
        pass


async def replay_recorded(client: EditorClient, session: Session, options: ReplayOptions,
                          observer: Observer | None = None) -> SessionResult:
    rp = _Replay(client, session, options, observer)
    res = rp.result
    by_rid: dict[int, RequestRecord] = {}
    last_t = 0.0
    for ev in session.events:
        gap = max(0.0, ev["t"] - last_t)
        last_t = ev["t"]
        await rp.pass_time(gap)
        kind = ev["e"]
        if kind == "open":
            rp.open(ev["uri"], ev["language_id"], ev["text"], ev["version"])
        elif kind == "change" and ev["uri"] in rp.docs:
            rp.change(ev["uri"], ev["changes"], ev["version"])
            inserted = sum(len(c[4]) for c in ev["changes"])
            res.final_chars += inserted
            res.typed_chars += inserted
            rp.set_ghost("", False)
        elif kind == "close" and ev["uri"] in rp.docs:
            rp.lsp.text_document_did_close(types.DidCloseTextDocumentParams(
                text_document=types.TextDocumentIdentifier(uri=ev["uri"])))
            del rp.docs[ev["uri"]]
        elif kind == "request" and ev["uri"] in rp.docs:
            by_rid[ev["rid"]] = rp.request(ev["uri"], ev["line"], ev["character"])
        elif kind == "cancel":
            if rp.pending is not None and by_rid.get(ev["rid"]) is rp.pending[2]:
                rp.cancel_pending()
        elif kind == "accept" and ev["text"]:
            # The accepted text reaches the server as the next change; count it as accepted, not typed.
            res.accepts += 1
            res.accepted_chars += len(ev["text"])
            rp.observer.accepted(ev["how"], ev["text"])
            res.typed_chars -= len(ev["text"])
            res.recorded_accepted_chars += len(ev["text"])
            record = by_rid.get(ev["rid"])
            if record is not None:
                record.accepted, record.accepted_chars = ev["how"], len(ev["text"])
                if record.text.startswith(ev["text"]):
                    res.agreed_chars += len(ev["text"])
                    await _run_accept(client, record)
    await rp.pass_time(0)
    rp.cancel_pending()
    rp.finish()
    res.typed_chars = max(0, res.typed_chars)
    return res


async def replay_session(client: EditorClient, session: Session, options: ReplayOptions,
                         observer: Observer | None = None) -> SessionResult:
    if session.kind == "synthetic":
        return await replay_synthetic(client, session, options, observer)
    return await replay_recorded(client, session, options, observer)


async def replay_all(server_cmd: list[str], sessions: list[Session], options: ReplayOptions,
                     log_path: str | None = None, progress=None, observer: Observer | None = None,
                     on_ready=None) -> tuple[list[SessionResult], dict]:
    """Replay sessions one after another in one server (like one editor window); returns the results
    with each request's server record attached, and the server's final stats."""
    client = EditorClient(server_cmd, "file:///replay", "", log_path=log_path)
    t_launch = time.perf_counter()
    await client.start(open_document=False, workspace_root=options.workspace_root)
    try:
        if options.cold_start_s is None:
            await client.wait_ready(timeout=STARTUP_TIMEOUT_S)
        else:
            await asyncio.sleep(max(0.0, t_launch + options.cold_start_s - time.perf_counter()))
        if on_ready:
            on_ready(client.status)
        results = []
        for session in sessions:
            client.status["lastLatencyMs"] = None
            results.append(await replay_session(client, session, options, observer))
            results[-1].started_ms -= t_launch * 1000
            if progress:
                progress(results[-1])
            await asyncio.sleep(0.2)  # let late answers land before the next session starts
        stats = await client.stats(requests=True)
    finally:
        await client.stop()
    _attach_server_records(results, stats.pop("requests", []) or [])
    return results, stats


def _attach_server_records(results: list[SessionResult], records: list[dict]) -> None:
    """Pair each client request with the server's record (same version and position, in order)."""
    queue: dict[tuple, list[AnswerRecord]] = {}
    for r in map(AnswerRecord.from_json, records):
        queue.setdefault((r.version, r.line, r.character), []).append(r)
    for res in results:
        for req in res.requests:
            match = queue.get((req.version, req.line, req.character))
            if match:
                req.server = match.pop(0)


# -- the command ------------------------------------------------------------------------------------

def parse_ab(specs: list[str]) -> list[tuple[str, list[str]]]:
    """--ab NAME=FLAGS (FLAGS: extra `completer serve` options, shell-quoted; may be empty)."""
    import shlex

    out = []
    for spec in specs:
        name, sep, flags = spec.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--ab expects NAME=FLAGS, got {spec!r}")
        out.append((name.strip(), shlex.split(flags)))
    return out


def run_replay(args, server_flags: list[str]) -> int:
    """`completer replay`: every session under every configuration, then the report."""
    import shlex
    import sys

    from . import report as replay_report
    from .editor_client import default_server_cmd
    from .session import SessionError, iter_paths, read_session

    try:
        sessions = [read_session(p) for p in iter_paths(args.sessions)]
        variants = parse_ab(args.ab or [])
    except (SessionError, ValueError) as exc:
        print(f"completer replay: {exc}", file=sys.stderr)
        return 2
    if not sessions:
        print("completer replay: no session files given (or none in the directories)", file=sys.stderr)
        return 2
    base_cmd = shlex.split(args.server_cmd) if args.server_cmd else default_server_cmd(server_flags)
    configs = [{"name": args.name, "server_cmd": base_cmd}]
    configs += [{"name": name, "server_cmd": base_cmd + flags} for name, flags in variants]
    options = ReplayOptions(speed=args.speed, max_pause_ms=args.max_pause_ms, accept=not args.no_accept,
                            seed=args.seed, cold_start_s=args.cold_start_s,
                            workspace_root=SYNTHETIC_ROOT if args.workspace else None, auto_close=args.auto_close)
    log = private_log("replay-server")
    for cfg in configs:
        print(f"replaying {len(sessions)} session(s) on {cfg['name']!r}: {shlex.join(cfg['server_cmd'])}",
              file=sys.stderr, flush=True)

        def progress(res: SessionResult) -> None:
            lat = [r.latency_ms for r in res.requests if r.latency_ms is not None]
            p50 = sorted(lat)[len(lat) // 2] if lat else float("nan")
            print(f"  {res.name}: {res.keystrokes} keys, {len(res.requests)} requests, p50 {p50:.1f} ms, "
                  f"accepted {res.accepted_chars}/{res.final_chars} chars", file=sys.stderr, flush=True)

        results, stats = asyncio.run(replay_all(cfg["server_cmd"], sessions, options, log_path=log,
                                                progress=progress))
        cfg.update(results=results, server_stats=stats, summary=replay_report.summarize(results))
        if options.cold_start_s is not None:
            cfg["summary"]["cold_start"] = replay_report.cold_start(results, options.cold_start_s)
    print(replay_report.table(configs))
    if options.cold_start_s is not None:
        print(replay_report.cold_start_table(configs))
    opts = {"speed": args.speed, "max_pause_ms": args.max_pause_ms, "accept": not args.no_accept, "seed": args.seed,
            "workspace_root": options.workspace_root, "auto_close": options.auto_close,
            "sessions": [s.path for s in sessions]}
    if args.json:
        replay_report.write_json(args.json, configs, opts)
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        replay_report.plot(args.plot, configs)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0 if all(c["summary"]["texts_ok"] for c in configs) else 1
