"""The torch engine in-process against the same engine behind `completer serve-openai` (the openai
backend over local HTTP), on the same completions; prints the same fields every run.

    python bench/backend_bench.py [--model embedded] [--cases 150] [--seed 1]

Cases are cursor positions mid-line in this repository's own files (not training data); the truth is
the rest of the line. Fields per configuration: median and p90 latency of a whole completion,
suggestions shown, exact rest-of-line matches, suggestions that are a correct prefix. The openai
backend cannot constrain tokens, so token healing is verified instead (a mismatch asks again without
healing); `openai-no-heal` shows what it would give without healing at all.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from completer.completion.pipeline import Completer, CompletionRequest, CompletionSettings
from completer.completion.prompt import PromptSettings
from completer.engines.loading import load_engine
from completer.engines.options import EngineOptions
from completer.lines import split_lines

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["completer/replay/demo_data/inventory.py", "completer/lines.py", "completer/engines/shaper.py", "completer/replay/session.py"]


def cases(n: int, seed: int) -> list[tuple[list[str], int, int, str]]:
    lines = split_lines("".join((ROOT / p).read_text() for p in SOURCES))
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        i = rng.randrange(len(lines))
        body = lines[i].rstrip("\n")
        indent = len(body) - len(body.lstrip())
        if len(body.strip()) < 12:
            continue
        c = rng.randrange(indent + 2, len(body) - 2)
        doc = lines[:i] + [body[:c] + "\n"] + lines[i + 1:]
        out.append((doc, i, c, body[c:]))
    return out


def measure(name: str, completer: Completer, work) -> dict:
    times, shown, exact, prefix = [], 0, 0, 0
    for doc, line, col, truth in work:
        t0 = time.perf_counter()
        text = completer.complete(CompletionRequest(doc, line, col, path="bench.py")).text
        times.append((time.perf_counter() - t0) * 1000)
        shown += bool(text)
        exact += bool(text) and text.strip() == truth.strip()
        prefix += bool(text) and truth.startswith(text)
    times.sort()
    return {"config": name, "p50_ms": statistics.median(times), "p90_ms": times[int(len(times) * 0.9)],
            "shown": shown, "exact": exact, "correct_prefix": prefix, "cases": len(work)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--cases", type=int, default=150)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    work = cases(args.cases, args.seed)
    server = subprocess.Popen([sys.executable, "-m", "completer", "serve-openai", "--port", "0", "--model", args.model,
                               "--device", "cpu"], stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().rsplit(" on ", 1)[1].strip()
        torch_engine = load_engine(EngineOptions(model=args.model, device="cpu"))
        remote = load_engine(EngineOptions(backend="openai", model=args.model, server_url=url))
        rows = [
            measure("torch (in-process)", Completer(torch_engine), work),
            measure("openai (local HTTP)", Completer(remote), work),
            measure("openai-no-heal", Completer(remote, CompletionSettings(prompt=PromptSettings(heal=False))), work),
        ]
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"machine: {platform.processor() or platform.machine()}, {platform.system()}, python {platform.python_version()}")
    print(f"{'config':22s} {'p50 ms':>8s} {'p90 ms':>8s} {'shown':>6s} {'exact':>6s} {'prefix':>7s} {'cases':>6s}")
    for r in rows:
        print(f"{r['config']:22s} {r['p50_ms']:8.1f} {r['p90_ms']:8.1f} {r['shown']:6d} {r['exact']:6d} "
              f"{r['correct_prefix']:7d} {r['cases']:6d}")
    base = rows[0]["p50_ms"]
    print(f"openai/torch p50 ratio: {rows[1]['p50_ms'] / base:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
