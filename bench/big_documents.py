"""Per-key latency in documents of unusual shape: large, huge, and minified (megabytes in one line).

Starts the real server as an editor does (`completer serve --stdio`, the embedded model unless
--model), opens one document per shape, types KEYS characters at a point in its middle (before a
`)` the editor closed, where the one-line suggestions weave through closers) and asks for a
suggestion after each key, as VS Code does. The latency is the client's, from the request to the
answer; rss_mb is the server's resident memory after the last key. Prints the machine, the date and
the same fields every run.

    python bench/big_documents.py [--model DIR] [--keys 12] [--shapes NAME ...] [--json OUT]
                                  [--server-checkout OTHER_CHECKOUT]

Shapes (the text is generated, the same every run):
    ordinary      16 KB of Python (generated functions, about 530 lines)
    parsed-900kb  900 KB of Python in ordinary lines: parsed in a window around the cursor
                  (syntax.WINDOW_FROM_BYTES), incrementally at each key
    big-1.5mb     1.5 MB of Python: past syntax.MAX_PARSE_BYTES (1 MB), handled line by line
    huge-5mb      5 MB of Python: the same (167k lines)
    lines-500k    5.4 MB of Python in 500k short lines (a generated table): the same
    min-140kb     minified JavaScript, 140 KB in one line
    min-1.4mb     minified JavaScript, 1.4 MB in one line
    min-1.4mb-utf the same with a non-ASCII comment and an emoji before the cursor (UTF-16 columns)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from completer.replay.editor_client import EditorClient
from completer.replay.metrics import percentiles

TYPED = "value, key"  # typed inside `call(|)`: the editor's `)` stays right of the cursor
MINIFIED_UNIT = "var a=function(b,c){return b.map(function(d){return d+c})};"
CURSOR = "\u2038"  # marks where typing starts in a shape's text; no shape holds it otherwise


def python_source(n_functions: int) -> str:
    """Ordinary-looking Python, the same every run: functions with a docstring, a loop and a call."""
    out = ["import os\nimport sys\n\n"]
    for i in range(n_functions):
        out.append(f"\ndef handler_{i}(event, context=None):\n"
                   f'    """Handle event kind {i % 7} and return its summary."""\n'
                   f"    total = 0\n"
                   f"    for item in event.items[{i % 5}:]:\n"
                   f"        if item.kind == {i % 3}:\n"
                   f"            total += item.size * {i % 11 + 1}\n"
                   f"    log_event('handler_{i}', total, context)\n"
                   f"    return {{'name': 'handler_{i}', 'total': total}}\n\n")
    return "".join(out)


def shape_text(name: str) -> tuple[str, str, str]:
    """(language id, text with CURSOR where the typing starts, file suffix)."""
    call = f"    result = call({CURSOR})\n"
    if name in ("ordinary", "parsed-900kb", "big-1.5mb", "huge-5mb"):
        size = {"ordinary": 16e3, "parsed-900kb": 0.9e6, "big-1.5mb": 1.5e6, "huge-5mb": 5e6}[name]
        lines = python_source(int(size / 300)).splitlines(keepends=True)  # ~300 bytes a function
        half = len(lines) // 2
        while not lines[half - 1].startswith("    return"):  # inside a function, after its return
            half += 1
        return "python", "".join(lines[:half]) + call + "".join(lines[half:]), ".py"
    if name == "lines-500k":
        rows = [f"    {i * 7919 % 100000},\n" for i in range(500_000)]
        return "python", "TABLE = [\n" + "".join(rows[:250_000]) + call + "".join(rows[250_000:]) + "]\n", ".py"
    if name.startswith("min-"):
        n = int((140e3 if name == "min-140kb" else 1.4e6) / len(MINIFIED_UNIT) / 2)
        head = MINIFIED_UNIT * n + ("/* café ✓ 😀 */" if name.endswith("-utf") else "")
        return "javascript", head + f"console.log({CURSOR});" + MINIFIED_UNIT * n + "\n", ".js"
    raise ValueError(f"unknown shape {name!r}")


SHAPES = ["ordinary", "parsed-900kb", "big-1.5mb", "huge-5mb", "lines-500k", "min-140kb", "min-1.4mb", "min-1.4mb-utf"]


async def type_into(server_cmd: list[str], shape: str, keys: int, pause_s: float, tmp: Path) -> dict:
    language, marked, suffix = shape_text(shape)
    cursor = marked.index(CURSOR)
    text = marked.replace(CURSOR, "", 1)
    line = text.count("\n", 0, cursor)
    col = cursor - (text.rfind("\n", 0, cursor) + 1)
    path = tmp / f"{shape}{suffix}"
    path.write_text(text, encoding="utf-8")
    client = EditorClient(server_cmd, path.as_uri(), text, language_id=language,
                          log_path=str(tmp / f"{shape}.log"))
    t0 = time.perf_counter()
    await client.start()
    latencies, shown = [], 0
    try:
        await client.wait_ready(timeout=120)
        ready_s = time.perf_counter() - t0
        for ch in (TYPED * (keys // len(TYPED) + 1))[:keys]:
            line, col = client.insert(line, col, ch)
            answer = await client.complete(line, col, timeout=30)
            latencies.append(answer.latency_ms)
            shown += bool(answer.text)
            await asyncio.sleep(pause_s)
        alive = client.client._server is not None and client.client._server.returncode is None
        rss_mb = server_rss_mb(client.client._server.pid) if alive else None
    finally:
        await client.stop()
    later = latencies[1:] or latencies  # the first key also opens the document (first parse, first prompt)
    return {"shape": shape, "bytes": len(text.encode("utf-8")), "lines": text.count("\n") + 1,
            "longest_line": max(map(len, text.splitlines())), "keys": len(latencies),
            "first_key_ms": round(latencies[0], 1) if latencies else None,
            "p50_ms": round(percentiles(later, (50,))[50], 1) if later else None,
            "p95_ms": round(percentiles(later, (95,))[95], 1) if later else None,
            "max_ms": round(max(later), 1) if later else None, "shown": shown,
            "ready_s": round(ready_s, 2), "rss_mb": rss_mb, "alive": alive}


def server_rss_mb(pid: int) -> int | None:
    """The server's resident memory after the last key, in MB (None where /proc is missing)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(row.split()[1]) // 1024 for row in f if row.startswith("VmRSS:"))
    except (OSError, StopIteration, ValueError):
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model directory (default: the embedded model)")
    ap.add_argument("--keys", type=int, default=12)
    ap.add_argument("--pause-ms", type=float, default=150.0, help="between keys (a typist's pace)")
    ap.add_argument("--shapes", nargs="+", default=SHAPES, choices=SHAPES)
    ap.add_argument("--server-arg", action="append", default=[], help="one more argument for `serve`")
    ap.add_argument("--server-checkout", default=None,
                    help="run the server from this checkout (e.g. a git worktree of an older commit), for A/B")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.server_checkout:  # `python -m` imports from the working directory first; the client stays ours
        args.json = os.path.abspath(args.json) if args.json else None  # paths given here mean here
        if args.model and os.path.exists(args.model):
            args.model = os.path.abspath(args.model)
        os.environ["PYTHONPATH"] = os.path.abspath(args.server_checkout)
        os.chdir(args.server_checkout)
    cmd = [sys.executable, "-m", "completer", "serve", "--stdio", *(["--model", args.model] if args.model else []),
           *args.server_arg]
    print(f"machine   {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"date      {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"server    {' '.join(cmd[2:])}" + (f" (from {args.server_checkout})" if args.server_checkout else ""))
    print(f"keys      {args.keys} per shape, {args.pause_ms:.0f} ms apart; p50/p95/max over keys 2..{args.keys}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="completer-big-") as tmp:
        for shape in args.shapes:
            rows.append(asyncio.run(type_into(cmd, shape, args.keys, args.pause_ms / 1000, Path(tmp))))
    fields = ["shape", "bytes", "lines", "longest_line", "first_key_ms", "p50_ms", "p95_ms", "max_ms", "shown", "rss_mb",
              "alive"]
    widths = [max(len(f), *(len(str(r[f])) for r in rows)) for f in fields]
    print("  ".join(f.ljust(w) for f, w in zip(fields, widths)))
    for r in rows:
        print("  ".join(str(r[f]).ljust(w) for f, w in zip(fields, widths)))
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "argv": sys.argv[1:]}, indent=1))
    return 0 if all(r["alive"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
