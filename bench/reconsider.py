"""Deciding again without the model: how good are the gate's decisions on a withheld suggestion's
candidates after the user typed into them (Completer.reconsider), against asking the model afresh?

    python bench/reconsider.py [--corpus data/corpus/text/val-python.jsonl] [--cases 600] [--seed 23]

For each line cut (line_cases.py, by default of the val split, on cuts other than the reranker's
fitting ones: another seed), the completer answers at the cursor; then the user types the first
k = 1, 2, 3 characters of the true rest of the line, and at each k the candidates that predicted
them are ranked again on what is left of them (no model), and, for comparison, the model is asked
afresh at the new cursor. Printed per k: cases, shown (over the shipped thresholds), exact among
shown, for both; and the calibration of both: exact rate per predicted-probability bin.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

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
    rows: list[dict] = []  # k, probability and exactness of the best candidate: rescored, and afresh
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
            rows.append({"k": k, "threshold": reranker.threshold(kind),
                         "p": best.probability, "exact": best.candidate.text.rstrip() == rest,
                         "fresh_p": top.probability if top else 0.0,
                         "fresh_exact": top is not None and top.candidate.text.rstrip() == rest})
    print(f"{args.corpus} ({args.split}), {args.cases} cuts (seed {args.seed}), {args.model}, thresholds "
          f"{reranker.thresholds}")
    print(f"{'typed':>5}{'cases':>7}{'rescored shown':>16}{'exact':>7}{'precision':>11}"
          f"{'afresh shown':>14}{'exact':>7}{'precision':>11}")
    for k in range(1, args.typed + 1):
        at = [r for r in rows if r["k"] == k]
        out = []
        for p, exact in (("p", "exact"), ("fresh_p", "fresh_exact")):
            shown = [r for r in at if r[p] >= r["threshold"]]
            hits = sum(r[exact] for r in shown)
            out.append((len(shown), hits, 100 * hits / max(1, len(shown))))
        print(f"{k:>5}{len(at):>7}" + "".join(f"{s:>16}{h:>7}{pr:>10.1f}%" if i == 0 else f"{s:>14}{h:>7}{pr:>10.1f}%"
                                            for i, (s, h, pr) in enumerate(out)))
    print("calibration, every k: predicted probability -> exact rate (cases)")
    for lo, hi in itertools.pairwise(BINS):
        cells = []
        for p, exact in (("p", "exact"), ("fresh_p", "fresh_exact")):
            b = [r for r in rows if lo <= r[p] < hi]
            cells.append(f"{100 * sum(r[exact] for r in b) / max(1, len(b)):5.1f}% ({len(b)})")
        print(f"  [{lo:.2f}, {min(hi, 1.0):.2f}): rescored {cells[0]:>14}   afresh {cells[1]:>14}")


if __name__ == "__main__":
    main()
