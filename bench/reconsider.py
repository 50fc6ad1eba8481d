"""Deciding again without the model: how good are the gate's decisions on a withheld suggestion's
candidates after the user typed into them (Completer.reconsider), against asking the model afresh?

    python bench/reconsider.py [--corpus data/corpus/text/val-python.jsonl] [--cases 600] [--seed 23]

For each line cut (line_cases.py, by default of the val split, on cuts other than the reranker's
fitting ones: another seed), the completer answers at the cursor; then the user types the first
k = 1, 2, 3 characters of the true rest of the line, and at each k the candidates that predicted
them are ranked again on what is left of them (no model), and, for comparison, the model is asked
afresh at the new cursor. Printed per k: cases, shown (the gate's confidence over the shipped
thresholds), exact among shown and taken among shown (the user takes some of it: acceptance.py), for
both; and the calibration of both: taken rate per predicted-probability bin (what the gate predicts).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

from completer.acceptance import decide_accept
from completer.completion.pipeline import Completer, CompletionSettings
from completer.engines.loading import load_engine
from completer.engines.options import EngineOptions

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # engine_builds is not installed
from engine_builds.fit_reranker import complete_at, typed_rankings
from engine_builds.line_cases import e2_cases

BINS = (0.0, 0.05, 0.1, 0.2, 0.4, 0.7, 1.01)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--corpus", type=Path, default=Path("data/corpus/text/val-python.jsonl"))
    ap.add_argument("--split", default="val")
    ap.add_argument("--cases", type=int, default=600)
    ap.add_argument("--seed", type=int, default=23, help="of the cuts (fit_reranker draws with 11)")
    ap.add_argument("--typed", type=int, default=3, help="characters typed, one at a time")
    args = ap.parse_args()
    engine = load_engine(EngineOptions(model=args.model, compile="off"))
    # Every candidate ranked and nothing withheld: the thresholds are applied here, per cursor kind.
    completer = Completer(engine, CompletionSettings(multiline=False, deadline_ms=10_000, min_confidence=0.0))
    reranker = completer.notes.reranker
    if reranker is None:
        sys.exit(f"{args.model} has no reranker")
    gate = completer.notes.gate or reranker  # whose thresholds the server applies
    rows: list[dict] = []  # k, the confidence in the best candidate, exact and taken: rescored, and afresh
    for case in e2_cases(args.corpus, args.cases, seed=args.seed, split=args.split):
        first = complete_at(completer, case.path, case.lines, case.line, case.character)
        target = case.target.rstrip()
        # A cut counts while some candidate predicted the typed characters; else the server asks the model.
        for k, kind, ranked in typed_rankings(reranker, case, first.ranked, args.typed):
            best = ranked[0]
            lines = list(case.lines)
            body = lines[case.line]
            lines[case.line] = body[:case.character] + target[:k] + body[case.character:]
            fresh = complete_at(completer, case.path, lines, case.line, case.character + k)
            top = fresh.ranked[0] if fresh.ranked else None
            rest = target[k:]
            fresh_text = top.candidate.text if top else ""
            rows.append({"k": k, "threshold": gate.threshold(kind),
                         "p": completer.confidence(best), "exact": best.candidate.text.rstrip() == rest,
                         "taken": bool(decide_accept(best.candidate.text, rest)[0]),
                         "fresh_p": completer.confidence(top) if top else 0.0,
                         "fresh_exact": top is not None and fresh_text.rstrip() == rest,
                         "fresh_taken": top is not None and bool(decide_accept(fresh_text, rest)[0])})
    print(f"{args.corpus} ({args.split}), {args.cases} cuts (seed {args.seed}), {args.model}, thresholds "
          f"{gate.thresholds}")
    print(f"{'typed':>5}{'cases':>7}{'rescored shown':>16}{'exact':>7}{'taken':>7}"
          f"{'afresh shown':>14}{'exact':>7}{'taken':>7}   (exact, taken: % of shown)")
    for k in range(1, args.typed + 1):
        at = [r for r in rows if r["k"] == k]
        cells = []
        for prefix, width in (("", 16), ("fresh_", 14)):
            shown = [r for r in at if r[prefix + "p"] >= r["threshold"]]
            exact, taken = (100 * sum(r[prefix + what] for r in shown) / max(1, len(shown)) for what in ("exact", "taken"))
            cells.append(f"{len(shown):>{width}}{exact:>6.1f}%{taken:>6.1f}%")
        print(f"{k:>5}{len(at):>7}" + "".join(cells))
    print("calibration, every k: predicted probability -> taken rate (cases)")
    for lo, hi in itertools.pairwise(BINS):
        cells = []
        for prefix in ("", "fresh_"):
            b = [r for r in rows if lo <= r[prefix + "p"] < hi]
            cells.append(f"{100 * sum(r[prefix + 'taken'] for r in b) / max(1, len(b)):5.1f}% ({len(b)})")
        print(f"  [{lo:.2f}, {min(hi, 1.0):.2f}): rescored {cells[0]:>14}   afresh {cells[1]:>14}")


if __name__ == "__main__":
    main()
