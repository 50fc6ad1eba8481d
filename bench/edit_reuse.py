"""Edit-distance KV reuse: what it saves and what it costs in quality, on the Enter key.

    python bench/edit_reuse.py [--model embedded] [--cases 150]

For held-out standard-library lines (needs `python -m engine_builds.prepare_data`): the user has
just typed line L (the cache holds that prompt), presses Enter, and the editor asks for a
suggestion on the new, indented line. The line L moves from the middle of the prompt into the
prefix, so everything after it (the suffix window) shifts: plain prefix reuse recomputes it, edit
reuse moves its K/V (re-rotated) and computes only the new line. Reports latency and prefilled
tokens for both, how often edit reuse changes the suggestion against an exact computation, and the
exact-match rate of both against the line the author actually wrote next.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import statistics
import time
from pathlib import Path

from completer.completion.pipeline import Completer, CompletionRequest, CompletionSettings
from completer.engines.loading import load_engine
from completer.engines.options import EngineOptions
from completer.lines import split_lines


def enter_cases(corpus: Path, n: int, seed: int = 11):
    with gzip.open(corpus, "rt", encoding="utf-8") as f:
        files = [json.loads(x) for x in f if '"split": "test"' in x]
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        f = rng.choice(files)
        lines = split_lines(f["text"])
        i = rng.randrange(8, max(9, len(lines) - 8))
        if i + 1 >= len(lines):
            continue
        cur, nxt = lines[i].rstrip("\n"), lines[i + 1].rstrip("\n")
        if len(cur.strip()) < 4 or len(nxt.strip()) < 4:
            continue
        indent = nxt[: len(nxt) - len(nxt.lstrip())]
        before = lines[:i] + [cur + "\n"] + lines[i + 1:]  # line i typed, cursor at its end
        after = lines[:i] + [cur + "\n", indent + "\n"] + lines[i + 1:]  # Enter: a new indented line
        out.append((f["path"].rsplit("/", 1)[-1], before, i, len(cur), after, i + 1, len(indent), nxt.strip()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--corpus", type=Path, default=Path("data/stdlib/corpus.jsonl.gz"))
    ap.add_argument("--cases", type=int, default=150)
    args = ap.parse_args()
    engine = load_engine(EngineOptions(model=args.model, device="cpu"))
    cases = enter_cases(args.corpus, args.cases)
    results = {mode: {"ms": [], "prefill": [], "shifted": [], "texts": []} for mode in ("exact", "prefix", "edit")}
    for path, before, bl, bc, after, al, ac, truth in cases:
        for mode in ("exact", "prefix", "edit"):
            completer = Completer(engine, CompletionSettings(multiline=False, deadline_ms=10_000,
                                                             edit_reuse=(mode == "edit")))
            engine.close()
            if mode != "exact":  # warm: the prompt of the line just typed
                completer.complete(CompletionRequest(before, bl, bc, path=path))
            t0 = time.perf_counter()
            r = completer.complete(CompletionRequest(after, al, ac, path=path))
            results[mode]["ms"].append((time.perf_counter() - t0) * 1000)
            results[mode]["prefill"].append(r.stats.prefill_tokens)
            results[mode]["shifted"].append(r.stats.shifted_tokens)
            results[mode]["texts"].append(r.text)
    truths = [c[-1] for c in cases]
    exact_texts = results["exact"]["texts"]
    print(f"model {engine.describe()['model_dir']}, {len(cases)} Enter-key cases, CPU\n")
    from rapidfuzz.distance import Levenshtein

    print(f"{'reuse':<22}{'p50 ms':>8}{'p90 ms':>8}{'prefill':>9}{'shifted':>9}{'same as exact':>15}{'EM vs author':>14}"
          f"{'ES vs author':>14}")
    for mode, label in (("exact", "none (cold)"), ("prefix", "prefix only"), ("edit", "prefix + edit chunks")):
        r = results[mode]
        ms = sorted(r["ms"])
        same = sum(a == b for a, b in zip(r["texts"], exact_texts)) / len(cases)
        em = sum(t.strip() == truth for t, truth in zip(r["texts"], truths)) / len(cases)
        es = statistics.mean(1 - Levenshtein.normalized_distance(t.strip(), truth) for t, truth in zip(r["texts"], truths))
        print(f"{label:<22}{statistics.median(ms):>8.1f}{ms[int(0.9 * (len(ms) - 1))]:>8.1f}"
              f"{statistics.mean(r['prefill']):>9.1f}{statistics.mean(r['shifted']):>9.1f}"
              f"{100 * same:>14.1f}%{100 * em:>13.1f}%{100 * es:>13.1f}%")


if __name__ == "__main__":
    main()
