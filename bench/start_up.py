"""How long a server takes from launch to its model being ready, and its first answer after that.

Launches `completer serve --stdio` as an editor does (compile mode: the server's default, so a start
with the compiled engine in the cache loads it; run the server once before, or `completer engine
--warm`, to have it there), waits for its `completer/status` to say ready, then asks for one inline
completion in a small Python file; rss_mb is the server's resident memory after that answer. With
--against CHECKOUT the rounds alternate between this checkout's server and that one's (e.g. a git
worktree of an older commit), so both meet the same machine load; the last lines give the medians
and their ratio.

    python bench/start_up.py --rounds 5 --against /tmp/old
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from completer.replay.editor_client import EditorClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from big_documents import server_rss_mb

ROOT = Path(__file__).resolve().parent.parent

TEXT = '''import os


def read_config(path):
    """The settings in the file at path, one `key = value` a line."""
    settings = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.partition("=")
            settings[key.strip()] = value.strip()
    return settings


def main():
    config = read_config(os.environ.get("APP_CONFIG", "app.cfg"))
    for key, value in sorted(config.items()):
        print(f"{key}: {value}")
    retu'''


def server_command(checkout: Path, extra: list[str]) -> list[str]:
    """The server of `checkout`, imported from there first whatever the working directory."""
    code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); from completer.cli.main import main; "
            "sys.exit(main(sys.argv[1:]))")
    return [sys.executable, "-c", code, str(checkout), "serve", "--stdio", *extra]


async def one_start(cmd: list[str], tmp: Path) -> dict:
    path = tmp / "app.py"
    path.write_text(TEXT)
    client = EditorClient(cmd, path.as_uri(), TEXT, log_path=str(tmp / "server.log"))
    t0 = time.perf_counter()
    await client.start()
    try:
        await client.wait_ready(timeout=300)
        ready_s = time.perf_counter() - t0
        line = TEXT.count("\n")
        t1 = time.perf_counter()
        answer = await client.complete(line, len(TEXT.rsplit("\n", 1)[1]), timeout=30)
        first_ms = (time.perf_counter() - t1) * 1000
        server = client.client._server
        rss_mb = server_rss_mb(server.pid) if server is not None and server.returncode is None else None
    finally:
        await client.stop()
    # answered: the server replied (with a suggestion or an empty list) before the 30 s timeout
    return {"ready_s": round(ready_s, 3), "first_answer_ms": round(first_ms, 1), "answered": not answer.cancelled,
            "rss_mb": rss_mb}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--against", default=None, help="another checkout whose server alternates with this one's")
    ap.add_argument("--server-arg", action="append", default=[], help="one more argument for `serve`")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    variants = [("this", ROOT)] + ([("against", Path(args.against).resolve())] if args.against else [])
    print(f"machine   {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    print(f"date      {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    for name, checkout in variants:
        print(f"{name:<9} {checkout}: serve --stdio {' '.join(args.server_arg)}")
    print("round  variant  ready_s  first_answer_ms  rss_mb  answered")
    rows = []
    for i in range(args.rounds):
        for name, checkout in (variants if i % 2 == 0 else variants[::-1]):
            with tempfile.TemporaryDirectory(prefix="completer-start-") as tmp:
                row = {"round": i + 1, "variant": name,
                       **asyncio.run(one_start(server_command(checkout, args.server_arg), Path(tmp)))}
            rows.append(row)
            print(f"{row['round']:<6} {name:<8} {row['ready_s']:<8} {row['first_answer_ms']:<16} {row['rss_mb']!s:<7} {row['answered']}")
    medians = {}
    for name, _ in variants:
        mine = [r for r in rows if r["variant"] == name]
        medians[name] = {f: statistics.median(r[f] for r in mine) for f in ("ready_s", "first_answer_ms")}
        rss = [r["rss_mb"] for r in mine if r["rss_mb"] is not None]
        medians[name]["rss_mb"] = statistics.median(rss) if rss else None
        print(f"median {name:<8} ready_s {medians[name]['ready_s']:.3f}  first_answer_ms {medians[name]['first_answer_ms']:.1f}"
              f"  rss_mb {medians[name]['rss_mb']}")
    if args.against:
        print(f"ratio against/this  ready_s {medians['against']['ready_s'] / medians['this']['ready_s']:.2f}  "
              f"first_answer_ms {medians['against']['first_answer_ms'] / medians['this']['first_answer_ms']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "medians": medians, "argv": sys.argv[1:]}, indent=1))
    return 0 if all(r["answered"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
