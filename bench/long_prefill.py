"""Long prefills on the CPU: eager (as the engine runs them past COMPILED_SEGMENT_MAX tokens) against
the compiled step fed in segments; prints the same fields every run.

    python bench/long_prefill.py [--model embedded] [--repeats 7]

A newly opened file's first request prefills 700-1,000 tokens, the slowest answers of a replay. The
engine runs such prefills eager with every core (engine.long_prefill_threads); the compiled step takes
at most COMPILED_SEGMENT_MAX tokens a call and keeps the one thread it was compiled with. Fields, per
prompt length: eager with 2 threads and with 1, eager with 2 threads in segments of 128 tokens (how
a cancellable warm-up prefills), the compiled step in segments of 256 and of 128 tokens;
medians over --repeats interleaved rounds, random token ids, cache position 0. It doubles as a probe of
how fast the host is at the moment (a shared host's speed drifts within an hour).
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import time

import torch

from completer.engines.torch.engine import TorchEngine

LENGTHS = (128, 256, 300, 512, 768, 1024)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="completer/models/embedded")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    engine = TorchEngine(args.model, compile="background", draft_model="none")
    if not engine.compile_finished.wait(600) or not engine.describe()["compiled"]:
        raise SystemExit("the compiled step is not available (compile failed or timed out): nothing to compare")
    rng = random.Random(0)
    ids = [rng.randrange(300, engine.tokenizer.vocab_size) for _ in range(max(LENGTHS))]

    def eager(n: int, threads: int, width: int | None = None) -> float:
        torch.set_num_threads(threads)
        try:
            t0 = time.perf_counter()
            for start in range(0, n, width or n):
                engine.model(torch.tensor([ids[start:min(n, start + (width or n))]]), start_pos=start, num_logits=1)
            return (time.perf_counter() - t0) * 1000
        finally:
            torch.set_num_threads(engine.threads)

    def segments(n: int, width: int) -> float:
        t0 = time.perf_counter()
        for start in range(0, n, width):
            engine._decode_fn(torch.tensor([ids[start:min(n, start + width)]]), start_pos=start, num_logits=1)
        return (time.perf_counter() - t0) * 1000

    variants = {"eager, 2 threads": lambda n: eager(n, 2), "eager, 1 thread": lambda n: eager(n, 1),
                "eager, 2 threads, 128-token segments": lambda n: eager(n, 2, 128),
                "compiled, 256-token segments": lambda n: segments(n, 256),
                "compiled, 128-token segments": lambda n: segments(n, 128)}
    print(f"machine: {platform.machine()} {torch.backends.cpu.get_cpu_capability()}, torch {torch.__version__}, "
          f"engine threads {engine.threads}, long-prefill threads {engine.long_prefill_threads}")
    print(f"{'tokens':>6}  " + "  ".join(f"{name:>28}" for name in variants) + "   (median ms)")
    with torch.inference_mode():
        for n in LENGTHS:
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(args.repeats):  # interleaved: the host's drift hits every variant alike
                for name, run in variants.items():
                    times[name].append(run(n))
            print(f"{n:>6}  " + "  ".join(f"{statistics.median(t):>28.1f}" for t in times.values()))


if __name__ == "__main__":
    main()
