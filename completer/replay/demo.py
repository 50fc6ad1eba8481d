"""`completer demo`: retype part of a real source file through the real server, like a user would.

The server runs as `completer serve --stdio` in a subprocess, driven over LSP by EditorClient: one
didChange and one inlineCompletion per keystroke, the editor's auto-indent after Enter, superseded
requests cancelled, suggestions that match what the user is about to type accepted (Tab). It prints
each new suggestion as the user would see it, and a latency summary at the end.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from pathlib import Path

from completer.lines import split_lines

from .driver import Observer
from .editor_client import STARTUP_TIMEOUT_S, EditorClient, Suggestion, default_server_cmd, private_log
from .metrics import percentiles

DEMO_FILE = Path(__file__).parent / "demo_data" / "inventory.py"
_DEF = re.compile(r"^\s*(async\s+)?(def|class)\s")


def choose_span(lines: list[str], n_lines: int, start: int | None) -> tuple[int, int]:
    if start is None:
        start = max(0, len(lines) - n_lines - 1)
        while start > 0 and not _DEF.match(lines[start]):
            start -= 1
    start = max(0, min(start, len(lines) - 1))
    return start, min(len(lines), start + n_lines)


class Display:
    def __init__(self) -> None:
        tty = sys.stdout.isatty()
        self.dim, self.reset = ("\x1b[2m", "\x1b[0m") if tty else ("«", "»")

    def suggestion(self, line_no: int, left: str, s: Suggestion) -> None:
        first, *rest = s.text.split("\n")
        more = f"  (+{len(rest)} lines)" if rest else ""
        print(f"{line_no + 1:>4} | {left}{self.dim}{first}{self.reset}{more}   [{s.latency_ms:.1f} ms]", flush=True)

    def accepted(self, line_no: int, text: str) -> None:
        print(f"{'':>4} | Tab: accepted {len(text)} characters", flush=True)


async def run_session(args, path: Path, server_flags: list[str]) -> int:
    original = path.read_text(encoding="utf-8")
    lines = split_lines(original)
    first, end = choose_span(lines, args.lines, args.start_line)
    target = "".join(lines[first:end])
    start_text = "".join(lines[:first] + lines[end:])
    log = private_log("demo-server")
    client = EditorClient(default_server_cmd(server_flags + ["--log-file", str(log)]), path.resolve().as_uri(), start_text,
                          log_path=str(log))
    display = Display()
    print(f"completer demo: retyping lines {first + 1}-{end} of {path} ({len(target)} characters)", flush=True)
    t_start = time.perf_counter()
    await client.start()
    try:
        await client.wait_ready(timeout=STARTUP_TIMEOUT_S)
        print(f"server ready in {time.perf_counter() - t_start:.2f} s: {client.status.get('backend')} on "
              f"{client.status.get('device')}, model {client.status.get('model')}, "
              f"decode step {client.status.get('compile') or 'not compiled'}\n", flush=True)
        interval = 1.0 / args.cps if args.cps > 0 else None
        latencies: list[float] = []
        counts = {"keystrokes": 0, "requests": 0, "with_text": 0, "cancelled": 0, "accepted": 0, "accepted_chars": 0}
        line, col, i = first, 0, 0
        shown = ""  # the ghost text currently on screen
        while i < len(target):
            t_key = time.perf_counter()
            if col == 0:  # the editor auto-indents after Enter: indentation arrives with the line
                indent = len(target[i:]) - len(target[i:].lstrip(" \t"))
                indent = min(indent, target.find("\n", i) - i if "\n" in target[i:] else indent)
                if indent > 0:
                    line, col = client.insert(line, col, target[i:i + indent])
                    i += indent
            ch = target[i]
            line, col = client.insert(line, col, ch)
            i += 1
            counts["keystrokes"] += 1
            typed_through = shown[1:] if shown.startswith(ch) else ""
            if ch == "\n" or i >= len(target):
                shown = ""
                continue
            counts["requests"] += 1
            s = await client.complete(line, col, timeout=interval)
            if s.cancelled:
                counts["cancelled"] += 1
                shown = typed_through
            else:
                latencies.append(s.latency_ms)
                if s.text:
                    counts["with_text"] += 1
                    if s.text != typed_through:
                        display.suggestion(line, client.lines[line][:col].rstrip("\n"), s)
                shown = s.text
            remaining = target[i:]
            accept = ""
            if not args.no_accept and len(shown) >= 2:
                if remaining.startswith(shown):
                    accept = shown
                elif "\n" in shown and remaining.startswith(shown.split("\n")[0] + "\n"):
                    accept = shown.split("\n")[0]  # accept the first line only
            if accept:
                await client.accept(s)
                display.accepted(line, accept)
                line, col = client.insert(line, col, accept)
                i += len(accept)
                counts["accepted"] += 1
                counts["accepted_chars"] += len(accept)
                shown = ""
            if interval:
                await asyncio.sleep(max(0.0, interval - (time.perf_counter() - t_key)))
        ok = client.text == original
        server = await client.stats()
        p = percentiles(latencies, (50, 90, 95, 99))
        print()
        print("summary")
        print(f"  typed {len(target)} characters: {counts['keystrokes']} keystrokes, {counts['accepted']} accepted "
              f"suggestions ({counts['accepted_chars']} characters, {100 * counts['accepted_chars'] / len(target):.0f}% "
              f"of the text)")
        print(f"  requests {counts['requests']}: {counts['with_text']} with a suggestion, {len(latencies)} answered, "
              f"{counts['cancelled']} cancelled by the next keystroke")
        if latencies:
            print(f"  latency keystroke -> suggestion (client, ms): p50 {p[50]:.1f}  p90 {p[90]:.1f}  p95 {p[95]:.1f}  "
                  f"p99 {p[99]:.1f}  max {max(latencies):.1f}")
        c, e = server["counters"], server["engine"]
        print(f"  server: {c['reuse_typed_through']} answered from the shown suggestion (typed through), "
              f"{c['reuse_recent']} from a recent one, {c['reuse_reconsidered']} by deciding again on a withheld one, "
              f"{e['engine_requests']} by the model")
        if e["engine_requests"]:
            print(f"  model work per request: {e['prompt_tokens'] / e['engine_requests']:.0f} prompt tokens, "
                  f"{e['cached_tokens'] / e['engine_requests']:.0f} reused from cache, "
                  f"{e['prefill_tokens'] / e['engine_requests']:.1f} computed, "
                  f"{e['decode_tokens'] / e['engine_requests']:.1f} generated; drafts accepted "
                  f"{e['accepted_tokens']}/{e['drafted_tokens']}")
        print(f"  final document equals the original file: {'yes' if ok else 'NO'}")
        return 0 if ok else 1
    finally:
        await client.stop()


class SessionDisplay(Observer):
    """Prints what the user sees during a session replay."""

    def __init__(self) -> None:
        self.display = Display()

    def shown(self, line_no: int, left: str, ghost: str, latency_ms: float | None) -> None:
        self.display.suggestion(line_no, left, Suggestion(ghost, None, latency_ms or 0.0))

    def accepted(self, how: str, text: str) -> None:
        what = {"full": "Tab", "line": "accept line", "word": "accept word"}.get(how, how)
        print(f"{'':>4} | {what}: accepted {len(text)} characters", flush=True)


def run_session_files(args, server_flags: list[str]) -> int:
    """`completer demo --session FILE...`: replay typing sessions (human timing) with a live display."""
    from . import report as replay_report
    from .driver import ReplayOptions, replay_all
    from .session import SessionError, read_session

    try:
        sessions = [read_session(p) for p in args.session]
    except SessionError as exc:
        print(f"completer demo: {exc}", file=sys.stderr)
        return 2

    def ready(status: dict) -> None:
        print(f"server ready: {status.get('backend')} on {status.get('device')}, model {status.get('model')}, "
              f"decode step {status.get('compile') or 'not compiled'}\n",
              flush=True)

    def done(res) -> None:
        print(f"  -- {res.name}: {res.accepted_chars} of {res.final_chars} characters from suggestions\n", flush=True)

    for s in sessions:
        print(f"session {s.name}: {s.meta.get('source', '')}", flush=True)
    log = private_log("demo-server")
    options = ReplayOptions(max_pause_ms=args.max_pause_ms, accept=not args.no_accept)
    results, _ = asyncio.run(replay_all(default_server_cmd(server_flags + ["--log-file", str(log)]), sessions, options,
                                        log_path=str(log), progress=done, observer=SessionDisplay(), on_ready=ready))
    summary = replay_report.summarize(results)
    print(replay_report.table([{"name": "summary", "summary": summary}]))
    return 0 if summary["texts_ok"] else 1


def announce_compile(compiles_first: bool) -> None:
    """The compiled decode step is what the demo measures; say why the start takes a while."""
    if compiles_first:
        print("the server compiles its decode step before the first key (about 1.5 min on 2 cores; "
              "--compile off starts at once, slower per token)", flush=True)


def run_demo(args, server_flags: list[str], compiles_first: bool = False) -> int:
    announce_compile(compiles_first)
    if args.session:
        return run_session_files(args, server_flags)
    path = Path(args.file) if args.file else DEMO_FILE
    if not path.is_file():
        print(f"completer demo: {path}: no such file", file=sys.stderr)
        return 2
    return asyncio.run(run_session(args, path, server_flags))
