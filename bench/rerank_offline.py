"""Rerankers and gates compared on recorded candidates: one model run, then any number of fits.

    # once: every E2/E3/E4 cut's candidates, scored, with its file alone and with 4 files open
    python bench/rerank_offline.py record --model completer/models/embedded --ood data/ood/corpus.jsonl.gz \
        --e4 data/corpus/text --workspace 4 --out runs/rr/eval.jsonl.gz
    # the fits: on val decisions recorded by `fit_reranker --record`, each variant judged on the eval ones
    python bench/rerank_offline.py compare --fit runs/rr/val.jsonl.gz --eval runs/rr/eval.jsonl.gz \
        --notes completer/models/embedded/completer.json

A variant is a fit (engine_builds/fit_reranker.py's, the same regression) on the val decisions of
the file alone, or on all of them (alone and with the workspace), optionally with two more inputs
derived from the recorded sources (whether a copy came from a context chunk or from the rest of an
open file: an experiment, not features the server computes); `--notes` adds a reranker and gate as
shipped (features it does not know get no weight). For each suite and workspace it prints the exact
match of the chosen candidate (every cursor kind, and at a line start: quality.py's EM with the gate
off, on the same candidates), and what the gate shows at 0.45, one threshold for every language
(share of cuts, exact and taken among those shown). The candidates are those of the model that
recorded them; a variant changes only the choice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # engine_builds is not installed
from completer.completion.rerank import FEATURES, Reranker
from engine_builds.fit_reranker import (
    Decision,
    alone_and_open,
    fit,
    gate_examples,
    read_records,
    reranker_examples,
    scoring_completer,
    without,
    write_records,
)
from engine_builds.line_cases import eval_suites, leave_out, seen_heldout

SOURCES_FROM_OTHER_FILES = ("context", "workspace")  # the two inputs --source-features adds, in order
GATE_AT = 0.45


def record(args) -> None:
    suites, pools = eval_suites(args.corpus, args.cases, "test", args.ood, args.e4, args.e4_cases)
    suites = leave_out(suites, seen_heldout())  # as bench/quality.py scores them
    completer = scoring_completer(args.model)
    decisions: list[Decision] = []
    for name, cases in suites.items():
        for open_files, found in alone_and_open(completer, cases, pools[name], args.workspace, 0, name):
            decisions += found
            print(f"{name}, {open_files} files open: {len(cases)} cuts", flush=True)
    write_records(args.out, decisions)
    print(f"recorded {len(decisions)} decisions in {args.out}")


def from_notes(path: Path) -> tuple[Reranker, Reranker]:
    """The reranker and gate of a completer.json, by feature name: a feature it lacks gets no weight."""
    notes = json.loads(path.read_text())

    def load(data: dict) -> Reranker:
        columns = zip(data["features"], data["weights"], data["mean"], data["scale"])
        named = {name: (w, m, s) for name, w, m, s in columns}
        w, m, s = zip(*(named.get(name, (0.0, 0.0, 1.0)) for name in FEATURES))
        return Reranker(w, m, s)

    return load(notes["reranker"]), load(notes["gate"])


def with_sources(decisions: list[Decision]) -> list[Decision]:
    """Each candidate's features and, after them, 1/0 for each of SOURCES_FROM_OTHER_FILES. A
    reranker over FEATURES alone reads only the first len(FEATURES) of them (its weights end there)."""
    return [dataclasses.replace(d, features=[x + [float(s == other) for other in SOURCES_FROM_OTHER_FILES]
                                             for x, s in zip(d.features, d.sources)]) for d in decisions]


def without_sources(decisions: list[Decision]) -> list[Decision]:
    """with_sources undone: the inputs held at 0 (a fit then gives them no weight)."""
    n = len(FEATURES)
    return [dataclasses.replace(d, features=[x[:n] + [0.0] * (len(x) - n) for x in d.features]) for d in decisions]


def fitted(decisions: list[Decision], dropped: Sequence[str] = ()) -> tuple[Reranker, Reranker]:
    decisions = without(decisions, dropped)
    reranker = fit(*reranker_examples(decisions))
    return reranker, fit(*gate_examples(decisions, reranker))


def judged(decisions: list[Decision], reranker: Reranker, gate: Reranker) -> dict:
    """Per (suite, files open): cuts, exact (all, at a line start), shown/exact/taken at the gate, and
    which sources were chosen and how often they were exact."""
    out: dict = defaultdict(lambda: defaultdict(int))
    model = FEATURES.index("from_model")
    for d in decisions:
        best = max(range(len(d.features)),
                   key=lambda i, d=d: (reranker.probability(d.features[i]), d.features[i][model]))
        row = out[(d.suite, d.open_files)]
        row["cuts"] += 1
        row["exact"] += d.exact[best]
        row["indent"] += d.kind == "indent"
        row["indent_exact"] += d.kind == "indent" and d.exact[best]
        row[f"{d.sources[best]}_chosen"] += 1
        row[f"{d.sources[best]}_exact"] += d.exact[best]
        if gate.probability(d.features[best]) >= GATE_AT:
            row["shown"] += 1
            row["shown_exact"] += d.exact[best]
            row["shown_taken"] += d.taken[best]
    return out


def compare(args) -> None:
    fit_on = [d for path in args.fit for d in read_records(path)]
    evals = [d for path in args.eval for d in read_records(path) if d.typed == 0]
    if args.source_features:
        fit_on, evals = with_sources(fit_on), with_sources(evals)
    alone = [d for d in fit_on if d.open_files == 0]
    variants: dict[str, tuple[Reranker, Reranker]] = {}
    if args.notes:
        variants["as shipped"] = from_notes(args.notes)
    plain = without_sources if args.source_features else list
    variants["fit: file alone"] = fitted(plain(alone), args.without)
    variants["fit: alone + workspace"] = fitted(plain(fit_on), args.without)
    if args.source_features:
        variants["fit: alone + workspace, + sources"] = fitted(fit_on, args.without)
    results = {name: judged(evals, *pair) for name, pair in variants.items()}
    keys = sorted({key for r in results.values() for key in r})
    print(f"{'suite':<16}{'open':>5}{'cuts':>6}  " + "".join(f"{name[:44]:>46}" for name in variants))
    print(f"{'':<27}" + f"{'EM all / line start   shown / exact / taken':>46}" * len(variants))
    totals: dict = defaultdict(lambda: defaultdict(int))
    for key in keys:
        cells = []
        for name in variants:
            row = results[name][key]
            for field, value in row.items():
                totals[(name, key[1])][field] += value
            cells.append(cell(row))
        print(f"{key[0]:<16}{key[1]:>5}{results[next(iter(variants))][key]['cuts']:>6}  " + "".join(cells))
    for open_files in sorted({key[1] for key in keys}):
        print(f"{'all pooled':<16}{open_files:>5}{'':>6}  " + "".join(
            cell(totals[(name, open_files)]) for name in variants))
    print("\nchosen source: chosen / exact (all suites)")
    for name in variants:
        for open_files in sorted({key[1] for key in keys}):
            row = totals[(name, open_files)]
            sources = ", ".join(f"{s} {row[f'{s}_chosen']} / {row[f'{s}_exact']}"
                                for s in ("model", "document", "below", "context", "workspace") if row[f"{s}_chosen"])
            print(f"  {name[:44]:<46}{open_files} open: {sources}")
    for name, (reranker, _) in variants.items():
        names = (*FEATURES, *(f"from_{s}" for s in SOURCES_FROM_OTHER_FILES))
        weights = [f"{f} {w:+.2f}" for f, w in zip(names, reranker.weights) if f not in FEATURES or abs(w) >= 0.3]
        print(f"\n{name}\n  reranker: " + ", ".join(weights))


def cell(row) -> str:
    """Exact match of every kind and at a line start, and the gate's shown / exact / taken (%)."""
    cuts = max(1, row["cuts"])
    shown = max(1, row["shown"])
    return (f"{100 * row['exact'] / cuts:>8.1f} / {100 * row['indent_exact'] / max(1, row['indent']):>4.1f}"
            f"{100 * row['shown'] / cuts:>12.0f} / {100 * row['shown_exact'] / shown:>4.1f} / "
            f"{100 * row['shown_taken'] / shown:>4.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    rec = sub.add_parser("record", help="score every candidate of the evaluation suites' cuts once")
    rec.add_argument("--model", default="completer/models/embedded")
    rec.add_argument("--corpus", type=Path, default=Path("data/stdlib/corpus.jsonl.gz"))
    rec.add_argument("--cases", type=int, default=600)
    rec.add_argument("--ood", type=Path)
    rec.add_argument("--e4", type=Path)
    rec.add_argument("--e4-cases", type=int, default=150)
    rec.add_argument("--workspace", type=int, default=4, help="other files of each cut's project open (0: none)")
    rec.add_argument("--out", type=Path, required=True)
    cmp = sub.add_parser("compare", help="fit the variants on --fit, judge them on --eval")
    cmp.add_argument("--fit", type=Path, nargs="+", required=True, help="val decisions, fit_reranker --record")
    cmp.add_argument("--eval", type=Path, nargs="+", required=True, help="evaluation decisions (record)")
    cmp.add_argument("--notes", type=Path, help="a completer.json: its reranker and gate too")
    cmp.add_argument("--without", nargs="+", default=[], metavar="FEATURE", help="features the fits give no weight")
    cmp.add_argument("--source-features", action="store_true",
                     help="also fit with inputs saying whether a copy came from another file (see above)")
    args = ap.parse_args()
    if args.command == "record":
        record(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
