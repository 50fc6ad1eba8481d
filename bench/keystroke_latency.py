"""Per-keystroke completion latency, in process, for several engine configurations in one run.

Retypes the last lines of a file character by character and runs one completion per keystroke, as
the server does (no LSP transport: see `completer demo` / the replay bench for client-observed
numbers). Variants share the same keystrokes, the same model and the same machine, so their ratios
are meaningful even on a noisy host. Prints the same fields every run.

    python bench/keystroke_latency.py [--model NAME|DIR] [--file F] [--lines N] [--device cpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import time
from pathlib import Path

import torch

from completer.completion.pipeline import Completer, CompletionRequest, CompletionSettings
from completer.engines.loading import load_engine
from completer.engines.options import EngineOptions
from completer.lines import split_lines
from completer.replay.demo import DEMO_FILE, choose_span
from completer.replay.metrics import percentiles

VARIANTS = {
    "cache+spec": dict(use_cache=True, speculative=True),
    "cache": dict(use_cache=True, speculative=False),
    "spec": dict(use_cache=False, speculative=True),
    "neither": dict(use_cache=False, speculative=False),
}


def keystroke_requests(path: Path, n_lines: int) -> list[CompletionRequest]:
    lines = split_lines(path.read_text(encoding="utf-8"))
    first, end = choose_span(lines, n_lines, None)
    target = "".join(lines[first:end])
    doc = lines[:first] + [""] + lines[end:]
    # doc[first] is the line being typed; lines already typed are inserted above it.
    requests, line, typed_line = [], first, ""
    for ch in target:
        if ch == "\n":
            doc = doc[:line] + [typed_line + "\n"] + doc[line:]
            line, typed_line = line + 1, ""
            continue
        typed_line += ch
        cur = doc[:line] + [typed_line + "\n"] + doc[line + 1:]
        requests.append(CompletionRequest(cur, line, len(typed_line), path=path.name))
    return requests


def run_variant(completer: Completer, requests: list[CompletionRequest]) -> dict:
    latencies, prefill, decode, drafted, accepted = [], [], [], [], []
    for req in requests:
        t0 = time.perf_counter()
        r = completer.complete(req)
        latencies.append((time.perf_counter() - t0) * 1000)
        prefill.append(r.stats.prefill_tokens)
        decode.append(r.stats.decode_tokens)
        drafted.append(r.stats.drafted_tokens)
        accepted.append(r.stats.accepted_tokens)
    p = percentiles(latencies, (50, 90, 95))
    return {"p50": p[50], "p90": p[90], "p95": p[95], "max": max(latencies),
            "prefill": statistics.mean(prefill), "decode": statistics.mean(decode),
            "accept": sum(accepted) / max(1, sum(drafted))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--file", type=Path, default=DEMO_FILE)
    ap.add_argument("--lines", type=int, default=12)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    engine = load_engine(EngineOptions(model=args.model, device=args.device, threads=args.threads))
    info = engine.describe()
    requests = keystroke_requests(args.file, args.lines)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"device {info['device']}")
    print(f"model: {info['model_dir']} ({info['parameters']:,} parameters, {info['dtype']})")
    print(f"keystrokes: {len(requests)} from {args.file.name}\n")
    base = Completer(engine)
    # Cold: the first request of a session prefills the whole prompt.
    engine.close()
    t0 = time.perf_counter()
    cold = base.complete(requests[0])
    print(f"cold request: {(time.perf_counter() - t0) * 1000:.1f} ms, {cold.stats.prompt_tokens} prompt tokens\n")
    print(f"{'variant':<12}{'p50 ms':>9}{'p90 ms':>9}{'p95 ms':>9}{'max ms':>9}{'prefill':>9}{'decode':>8}"
          f"{'accept':>8}{'p50 vs cache+spec':>19}")
    results = {}
    for name, kw in VARIANTS.items():
        completer = Completer(engine, dataclasses.replace(CompletionSettings(), **kw))
        engine.close()
        completer.complete(requests[0])  # warm the cache (and the allocator) like an open editor
        results[name] = r = run_variant(completer, requests)
        ratio = r["p50"] / results["cache+spec"]["p50"]
        print(f"{name:<12}{r['p50']:>9.1f}{r['p90']:>9.1f}{r['p95']:>9.1f}{r['max']:>9.1f}{r['prefill']:>9.1f}"
              f"{r['decode']:>8.1f}{r['accept']:>8.2f}{ratio:>18.2f}x")


if __name__ == "__main__":
    main()
