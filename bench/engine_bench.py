"""Engine micro-benchmarks for one model on this machine; prints the same fields every run.

    python bench/engine_bench.py [--model embedded] [--device cpu] [--decode-dtype auto] [--repeats 7]

Fields: cold prefill at 512/1024/2048 tokens; warm time to first token when 1-3 tokens are typed on
a cached prompt; decode ms/token; a 16-token completion end to end on a warm cache; tokens/s with
n-gram speculation on and off on copy-heavy and ordinary text, with acceptance; cache hit ratio over
a typing sequence; resident memory. Medians over --repeats (speculation: 8 x --repeats interleaved rounds).
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import time

import torch

from completer.engines.contract import GenerationRequest, StopRules

ORDINARY = '''import os
import sys


def walk_python_files(root, skip_hidden=True):
    """Yield the Python files below root."""
    for dirpath, dirnames, filenames in os.walk(root):
        if skip_hidden:
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.endswith(".py"):
                yield os.path.join(dirpath, name)


def count_lines(path):
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f)


def main(argv):
    total = 0
    for path in walk_python_files(argv[1]):
'''

# Copy-heavy: the completion repeats a block that is already in the prompt (a second argument
# parser like the first), the case where prompt-lookup drafts are right.
COPY_HEAVY = ORDINARY + '''        total += count_lines(path)
    print(total)


def parse_args(argv):
    parser = argparse.ArgumentParser(description="count the lines of Python files")
    parser.add_argument("root", help="the directory to scan")
    parser.add_argument("--hidden", action="store_true", help="include hidden directories")
    parser.add_argument("--verbose", action="store_true", help="print every file and its count")
    return parser.parse_args(argv)


def parse_args_for_tests(argv):
    parser = argparse.ArgumentParser(description="count the lines of Python files")
    parser.add_argument("root", help="the directory to scan")
'''


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def generate(engine, ids, n, speculative=True, use_cache=True):
    stream = engine.generate(GenerationRequest(prompt_ids=tuple(ids), max_new_tokens=n, stop=StopRules(max_lines=0),
                                               speculative=speculative, use_cache=use_cache))
    for _ in stream:
        pass
    return stream.stats


def speculation_on_off(engine, ids, rounds: int, sync) -> tuple[dict, dict]:
    """Decode 32 tokens with speculation off and on, interleaved (so drift on a shared machine hits
    both alike): tokens/s by setting and the last stats of each."""
    times: dict[bool, list[float]] = {False: [], True: []}
    last = {}
    for _ in range(rounds):
        for spec in (False, True):
            t0 = time.perf_counter()
            last[spec] = generate(engine, ids, 32, speculative=spec)
            sync()
            times[spec].append(time.perf_counter() - t0)
    tps = {spec: last[spec].decode_tokens / statistics.median(times[spec]) for spec in (False, True)}
    return tps, last


def filler(engine, n_tokens: int) -> list[int]:
    ids = engine.tokenizer.encode(ORDINARY * 40)
    return ids[:n_tokens]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--decode-dtype", default="auto")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--compile", action="store_true", help="torch.compile the decode step (slow start)")
    ap.add_argument("--draft-model", default=None, help="also measure draft-model speculation (e.g. embedded-draft)")
    ap.add_argument("--max-draft", type=int, default=None, help="longest draft to verify (engine default if unset)")
    args = ap.parse_args()
    from completer.engines.model_dirs import resolve_model
    from completer.engines.torch.engine import TorchEngine

    engine = TorchEngine(resolve_model(args.model), device=args.device, decode_dtype=args.decode_dtype,
                         compile=args.compile, draft_model=args.draft_model,
                         **({"max_draft": args.max_draft} if args.max_draft else {}))
    info = engine.describe()
    r = args.repeats
    print(f"machine: {platform.machine()} {platform.processor() or ''} {torch.get_num_threads()} threads; "
          f"python {sys.version.split()[0]}, torch {torch.__version__}")
    print(f"model: {info['model_dir']} ({info['parameters']:,} parameters) on {info['device']}, "
          f"weights {info['dtype']}, decode weights {info['decode_dtype']}, compiled {info['compiled']} "
          f"(static shapes {info['static_decode']}), "
          f"ready in {info['load_ms'] / 1000:.1f} s; compiled engine {info.get('compiled_engine') or '-'}; "
          f"compiled graphs: {info.get('compiled_graphs') or 'none'}")
    costs = engine.ngram_policy.cost
    print("verification cost, 1 + k tokens vs 1 (k = 1..): " + " ".join(f"{c:.2f}" for c in costs[1:]) + "\n")

    def sync():
        if engine.device.startswith("cuda"):
            torch.cuda.synchronize()

    # Cold prefill: nothing cached.
    for n in (512, 1024, 2048):
        ids = filler(engine, min(n, engine.max_seq - 2))

        def cold():
            engine.close()
            generate(engine, ids, 1)
            sync()
        cold()
        print(f"cold prefill {n:>4} tokens: {median_ms(cold, r):8.1f} ms")

    # Warm keystrokes: 1-3 new tokens after a cached 1k-token prompt, up to the first token; 8 and 32
    # new tokens are an edit a few lines above the cursor (or a pasted line).
    base = filler(engine, 1000)
    extra = (engine.tokenizer.encode(" total += count_lines(path)") + filler(engine, 40))[:32]
    for k in (1, 2, 3, 8, 32):
        def warm():
            engine.slot.cached_ids = engine.slot.cached_ids[:len(base)]
            generate(engine, base + extra[:k], 1)
            sync()
        generate(engine, base, 1)
        print(f"warm first token, {k:>2} new token{'s' if k > 1 else ' '}: {median_ms(warm, r):8.2f} ms")

    # Decode speed and a 16-token completion on a warm cache, speculation off.
    generate(engine, base, 1)
    t16 = median_ms(lambda: (generate(engine, base, 16, speculative=False), sync()), r)
    t1 = median_ms(lambda: (generate(engine, base, 1, speculative=False), sync()), r)
    print(f"decode: {(t16 - t1) / 15:8.2f} ms/token")
    print(f"warm 16-token completion: {t16:8.1f} ms")

    # Speculation on and off.
    for name, text in (("copy-heavy", COPY_HEAVY), ("ordinary", ORDINARY)):
        ids = engine.tokenizer.encode(text)
        generate(engine, ids, 1)
        # Many short rounds: a 32-token run takes ~30 ms, and single runs swing by 10% on a shared host.
        tps, last = speculation_on_off(engine, ids, 8 * r, sync)
        s = last[True]
        acc = s.accepted_tokens / max(1, s.drafted_tokens)
        print(f"speculation {name:>10}: {tps[False]:7.0f} -> {tps[True]:7.0f} tokens/s ({tps[True] / tps[False]:.2f}x), "
              f"accepted {s.accepted_tokens}/{s.drafted_tokens} ({100 * acc:.0f}%), "
              f"forward passes {last[False].forward_passes} -> {s.forward_passes}")

    if engine.drafter is not None:
        from completer.engines.torch.decoding import DraftPolicy

        costs = engine.drafter.policy.cost
        print(f"draft model {engine.drafter.model_dir.name}: cost of drafting+verifying k tokens vs one step: "
              + ", ".join(f"k={k} {c:.2f}" for k, c in enumerate(costs)))
        ids = engine.tokenizer.encode(ORDINARY)
        saved = engine.ngram_policy, engine.drafter.policy
        engine.ngram_policy = DraftPolicy([1e9] * len(costs))  # measure the model drafter alone
        for label, policy in (("policy", saved[1]), ("forced k=3", None)):
            if policy is None:
                engine.drafter.policy = DraftPolicy([1.0] * len(costs), prior_rate=0.99)
                engine.drafter.policy.length = lambda available: min(3, available)
            tps, last = speculation_on_off(engine, ids, r, sync)
            s = last[True]
            print(f"draft-model speculation ({label}): {tps[False]:7.0f} -> {tps[True]:7.0f} tokens/s "
                  f"({tps[True] / tps[False]:.2f}x), accepted {s.accepted_tokens}/{s.drafted_tokens}")
        engine.ngram_policy, engine.drafter.policy = saved

    # Cache hit ratio over a typing sequence: each keystroke extends the previous prompt.
    engine.close()
    line = engine.tokenizer.encode("        total += count_lines(path)\n    print(total)\n")
    cached = computed = 0
    for i in range(1, len(line) + 1):
        stats = generate(engine, base + line[:i], 4)
        cached += stats.cached_tokens
        computed += stats.prefill_tokens
    print(f"cache hit ratio while typing: {100 * cached / (cached + computed):.1f}% of prompt tokens reused")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"resident memory (peak): {rss:.0f} MB")


if __name__ == "__main__":
    main()
