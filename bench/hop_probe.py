"""Where a keystroke's answer spends its time between the editor and the server, hop by hop.

    python bench/hop_probe.py [SESSION ...] [--server-flags "--compile on"]

Replays typing sessions (default: four of bench/sessions) through the real server, with pygls'
send, parse and dispatch wrapped in both processes to log timestamps. time.perf_counter is
CLOCK_MONOTONIC on Linux, so the client's and the server's stamps are on one clock. Prints, for
typed-through and for model answers separately, the median of each hop of an inlineCompletion:
client sends until the server has the body; the server parses it, dispatches it, runs the handler;
the answer is written, read and parsed; the client dispatches it. And the didChange sent just before each
typed-through request: how long the server takes to handle it. The wrapping itself costs a few
microseconds per hop.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SESSIONS = ["utils-block-106", "_tokenizer-body-26", "list-block-192", "path-body-231"]
ID = re.compile(rb'"id":\s*(\d+)')
EVENTS: list[tuple] = []  # (event, message id, method or answer kind, t0, t1)


def _id(data):
    return data.get("id") if isinstance(data, dict) else getattr(data, "id", None)


def install(role: str) -> None:
    """Wrap pygls (and, in the server, completer's handler) to log timestamps; dump them at exit."""
    import atexit

    from pygls import io_
    from pygls.protocol import json_rpc

    clock = time.perf_counter
    if role == "server":  # the client writes its own before reporting
        atexit.register(lambda: Path(os.environ["HOP_PROBE_DIR"], "server.json").write_text(json.dumps(EVENTS)))

    send = json_rpc.JsonRPCProtocol._send_data

    def send_data(self, data):
        t0 = clock()
        send(self, data)
        method = data.get("method") if isinstance(data, dict) else getattr(data, "method", None)
        EVENTS.append(("send", _id(data), method, t0, clock()))
    json_rpc.JsonRPCProtocol._send_data = send_data

    handle = json_rpc.JsonRPCProtocol.handle_message

    def handle_message(self, message):
        t0 = clock()
        handle(self, message)
        EVENTS.append(("handle", getattr(message, "id", None), getattr(message, "method", None), t0, clock()))
    json_rpc.JsonRPCProtocol.handle_message = handle_message

    class TimedJson:  # pygls' run_async parses bodies with io_.json.loads
        dumps = staticmethod(json.dumps)

        @staticmethod
        def loads(body, **kw):
            t0 = clock()
            found = ID.search(body) if isinstance(body, bytes) else None
            result = json.loads(body, **kw)
            EVENTS.append(("parse", int(found.group(1)) if found else None, None, t0, clock()))
            return result
    io_.json = TimedJson()
    if role != "server":
        return

    def timed_body(read):
        async def readexactly(self, n):
            body = await read(self, n)
            found = ID.search(body)
            EVENTS.append(("body", int(found.group(1)) if found else None, None, clock(), 0.0))
            return body
        return readexactly
    from lsp import inline_completion
    try:
        from lsp import transport
        transport._Reader.readexactly = timed_body(transport._Reader.readexactly)
    except ImportError:  # a checkout from before lsp/transport.py
        pass
    # pygls' own reader (stdin not a pipe): the body is logged when the loop gets it back.
    io_.StdinAsyncReader.readexactly = timed_body(io_.StdinAsyncReader.readexactly)

    complete = inline_completion.complete_inline

    async def complete_inline(ls, params):
        reused = sum(v for k, v in ls.counters.items() if k.startswith("reuse_"))
        msg_id = ls.protocol._ctx_msg_id.get(None)
        t0 = clock()
        answer = await complete(ls, params)
        kind = "reuse" if sum(v for k, v in ls.counters.items() if k.startswith("reuse_")) > reused else "model"
        EVENTS.append(("handler", msg_id, kind, t0, clock()))
        return answer
    inline_completion.complete_inline = complete_inline


# Consecutive stamps in causal order. A write can return after the reader already woke on the other
# core, so each hop ends when the next process has the data, never when a write call returned.
HOPS = [("c_send0", "s_body", "client sends, server has the body"),
        ("s_body", "s_parse1", "server parses it"),
        ("s_parse1", "s_handler0", "server dispatches"),
        ("s_handler0", "s_handler1", "the handler"),
        ("s_handler1", "c_parse1", "answer written, read and parsed"),
        ("c_parse1", "c_handle1", "client dispatches")]


def report(out: Path) -> None:
    client = json.loads((out / "client.json").read_text())
    server = json.loads((out / "server.json").read_text())
    stamps: dict = {}
    for event, msg_id, method, t0, t1 in client:
        if event == "send" and method == "textDocument/inlineCompletion":
            stamps[msg_id] = {"c_send0": t0}
        elif msg_id in stamps and event == "parse":
            stamps[msg_id]["c_parse1"] = t1
        elif msg_id in stamps and event == "handle" and method is None:
            stamps[msg_id]["c_handle1"] = t1
    last_change, changes = None, []
    for event, msg_id, method, t0, t1 in server:
        if event == "handle" and method == "textDocument/didChange":
            last_change = t1 - t0
        if msg_id not in stamps:
            continue
        s = stamps[msg_id]
        if event == "body":
            s["s_body"] = t0
        elif event == "parse":
            s["s_parse1"] = t1
        elif event == "handler":
            s["s_handler0"], s["s_handler1"], s["kind"] = t0, t1, method
            if method == "reuse" and last_change is not None:
                changes.append(last_change)
    keys = {a for a, _, _ in HOPS} | {b for _, b, _ in HOPS}
    for kind, title in (("reuse", "typed-through / reuse answers"), ("model", "model answers")):
        rows = [s for s in stamps.values() if s.get("kind") == kind and keys <= s.keys()]
        print(f"\n{title}: {len(rows)} requests, median ms per hop")
        if not rows:
            continue
        for a, b, name in HOPS:
            print(f"  {name:<32}{statistics.median((r[b] - r[a]) * 1000 for r in rows):>8.3f}")
        print(f"  {'total, client-observed':<32}{statistics.median((r['c_handle1'] - r['c_send0']) * 1000 for r in rows):>8.3f}")
    if changes:
        print(f"\ndidChange before a typed-through request, server handling: {statistics.median(changes) * 1000:.3f} ms median")


def main() -> int:
    if sys.argv[1:2] == ["--role-server"]:
        sys.path.insert(0, str(ROOT))
        install("server")
        from completer.cli.main import main as cli
        return cli(["serve", "--stdio", *sys.argv[2:]])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sessions", nargs="*")
    ap.add_argument("--server-flags", default="--compile on")
    args = ap.parse_args()
    sessions = args.sessions or [str(ROOT / "bench" / "sessions" / f"{n}.msgpack") for n in DEFAULT_SESSIONS]
    out = Path(tempfile.mkdtemp(prefix="hop-probe-"))
    os.environ["HOP_PROBE_DIR"] = str(out)
    install("client")
    from completer.cli.main import main as cli
    server = shlex.join([sys.executable, str(Path(__file__).resolve()), "--role-server"]) + " " + args.server_flags
    rc = cli(["replay", *sessions, "--max-pause-ms", "1000", "--server-cmd", server])
    (out / "client.json").write_text(json.dumps(EVENTS))
    for _ in range(100):  # the server writes its stamps as it exits
        if (out / "server.json").exists():
            break
        time.sleep(0.1)
    report(out)
    return rc


if __name__ == "__main__":
    sys.exit(main())
