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

from completer.completion.pipeline import Completer, CompletionRequest, CompletionSettings, Held, held_after
from completer.completion.rerank import cursor_kind, surroundings
from completer.engines.loading import load_engine
from completer.engines.options import EngineOptions
from completer.syntax import DocumentSyntax, language_for

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # engine_builds is not installed
from engine_builds.line_cases import e2_cases

BINS = (0.0, 0.05, 0.1, 0.2, 0.4, 0.7, 1.01)


def complete(completer: Completer, lines, line: int, character: int, path: str):
    language = language_for("", path)
    snapshot = DocumentSyntax(language, "".join(lines)).snapshot if language else None
    return completer.complete(CompletionRequest(lines, line, character, path=path.rsplit("/", 1)[-1], syntax=snapshot))


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
        first = complete(completer, case.lines, case.line, case.character, case.path)
        if not first.ranked:
            continue
        target = case.target.rstrip()
        model_text = next((s.candidate.text for s in first.ranked if s.candidate.source == "model"), "")
        held = Held(first.ranked, model_text, surroundings(case.lines, case.line, case.character))
        for k in range(1, min(args.typed, len(target) - 1) + 1):
            typed = held_after(held, target[:k])
            if typed is None:
                break  # no candidate predicted it: the server asks the model, as before
            kind = cursor_kind(typed.around.left)
            best = reranker.rank(typed.ranked, typed.model_text, kind, typed.around)[0]
            lines = list(case.lines)
            body = lines[case.line]
            lines[case.line] = body[:case.character] + target[:k] + body[case.character:]
            fresh = complete(completer, lines, case.line, case.character + k, case.path)
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
