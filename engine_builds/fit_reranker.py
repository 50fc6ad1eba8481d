"""Fit the reranker of a target model (completer/completion/rerank.py) and write its completer.json.

    python -m engine_builds.fit_reranker --model completer/models/embedded \
        --corpus data/stdlib/corpus.jsonl.gz data/corpus/text/val-python.jsonl --split val --cases 1500 \
        --languages python --threshold 0.05 --thresholds line_start=0.15 --typed-chars 3

For each held-out line cut (line_cases.py: cursors at the indentation, mid-line and mid-identifier,
drawn from files of the `val` split, never from the evaluation splits) the completer runs as the
server does, with every candidate scored and none withheld; a candidate is a positive example when it
is exactly the rest of the line. A logistic regression (L2, standardised features) over all candidates
then predicts that probability. The same candidates after the user typed the first one to three
characters of the line into them are examples too (feature `typed`): the server decides again on
those without the model (Completer.reconsider), and their rescored log-probabilities alone overrate
them (a rescored 0.4-0.7 was right 41% of the time, 2026-12-05). Thresholds per cursor kind are
written as given (--threshold, --thresholds), since they are chosen from the replay's
precision/recall curve, not from these cases.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from completer.completion.pipeline import (
    Completer,
    CompletionRequest,
    CompletionResult,
    CompletionSettings,
    Held,
    held_after,
)
from completer.completion.rerank import (
    CURSOR_KINDS,
    FEATURES,
    METADATA_FILE,
    ModelNotes,
    Reranker,
    Scored,
    cursor_kind,
    surroundings,
)
from completer.engines.loading import load_engine
from completer.engines.options import EngineOptions
from completer.syntax import DocumentSyntax, language_for
from engine_builds.line_cases import e2_cases


def complete_at(completer: Completer, path: str, lines, line: int, character: int) -> CompletionResult:
    """The completion at a cursor of a corpus file, with the document's tree, as the server asks."""
    language = language_for("", path)
    snapshot = DocumentSyntax(language, "".join(lines)).snapshot if language else None
    return completer.complete(CompletionRequest(lines, line, character, path=path.rsplit("/", 1)[-1], syntax=snapshot))


def typed_rankings(reranker: Reranker, case, ranked: Sequence[Scored], typed_chars: int):
    """(k, cursor kind, candidates) for k = 1..typed_chars: the case's candidates that predicted the
    first k characters of its target, ranked again on what is left of them, as the server does when
    the user types into a withheld suggestion (Completer.reconsider); it stops where none did."""
    target = case.target.rstrip()
    model_text = next((s.candidate.text for s in ranked if s.candidate.source == "model"), "")
    held = Held(tuple(ranked), model_text, surroundings(case.lines, case.line, case.character))
    for k in range(1, min(typed_chars, len(target) - 1) + 1):
        typed = held_after(held, target[:k])
        if typed is None:
            return
        kind = cursor_kind(typed.around.left)
        yield k, kind, reranker.rank(typed.ranked, typed.model_text, kind, typed.around)


def collect(completer: Completer, cases, typed_chars: int = 0) -> tuple[list[list[float]], list[float]]:
    """Features and labels (exact or not) of every scored candidate of every case; with
    `typed_chars`, also of the candidates after the user typed each of the target's first
    1..typed_chars characters into them (typed_rankings)."""
    xs, ys = [], []
    for case in cases:
        result = complete_at(completer, case.path, case.lines, case.line, case.character)
        target = case.target.rstrip()
        for scored in result.ranked:
            xs.append(list(scored.features))
            ys.append(float(scored.candidate.text.rstrip() == target))
        for k, _, ranked in typed_rankings(completer.notes.reranker, case, result.ranked, typed_chars):
            for scored in ranked:
                xs.append(list(scored.features))
                ys.append(float(scored.candidate.text.rstrip() == target[k:]))
    return xs, ys


def fit(xs: list[list[float]], ys: list[float], l2: float = 1.0, steps: int = 500) -> Reranker:
    """Logistic regression by L-BFGS on standardised features (the bias column is left as it is)."""
    x = torch.tensor(xs, dtype=torch.float64)
    y = torch.tensor(ys, dtype=torch.float64)
    mean, scale = x.mean(0), x.std(0)
    mean[0], scale[0] = 0.0, 1.0
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w], max_iter=steps, line_search_fn="strong_wolfe")

    def loss():
        opt.zero_grad()
        value = torch.nn.functional.binary_cross_entropy_with_logits(z @ w, y) + l2 * (w[1:] ** 2).sum() / len(y)
        value.backward()
        return value

    opt.step(loss)
    return Reranker(tuple(w.detach().tolist()), tuple(mean.tolist()), tuple(scale.tolist()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="the target model directory (completer.json is written there)")
    ap.add_argument("--corpus", type=Path, nargs="+", default=[Path("data/stdlib/corpus.jsonl.gz")])
    ap.add_argument("--split", default="val")
    ap.add_argument("--cases", type=int, default=1500, help="line cuts per corpus")
    ap.add_argument("--languages", nargs="+", required=True, help="what the model was trained on (others get "
                    "no suggestions)")
    ap.add_argument("--threshold", type=float, default=0.0, help="least probability shown, every cursor kind")
    ap.add_argument("--thresholds", nargs="+", default=[], metavar="KIND=P",
                    help=f"least probability shown for some cursor kinds ({', '.join(CURSOR_KINDS)}), over --threshold")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--typed-chars", type=int, default=3, metavar="K",
                    help="also fit on each case's candidates after the user typed the target's first 1..K "
                    "characters (how the server reconsiders a withheld suggestion; default 3, 0: none)")
    args = ap.parse_args()
    engine = load_engine(EngineOptions(model=args.model, compile="off"))
    completer = Completer(engine, CompletionSettings(multiline=False, deadline_ms=10_000),
                          notes=ModelNotes(reranker=Reranker.neutral()))
    xs, ys = [], []
    t0 = time.perf_counter()
    for corpus in args.corpus:
        x, y = collect(completer, e2_cases(corpus, args.cases, seed=args.seed, split=args.split), args.typed_chars)
        xs += x
        ys += y
        print(f"{corpus}: {len(x)} candidates, {int(sum(y))} exact ({time.perf_counter() - t0:.0f} s)", flush=True)
    reranker = fit(xs, ys)
    thresholds = {kind: args.threshold for kind in CURSOR_KINDS}
    for item in args.thresholds:
        kind, _, value = item.partition("=")
        if kind not in CURSOR_KINDS:
            raise SystemExit(f"--thresholds {item}: the cursor kinds are {', '.join(CURSOR_KINDS)}")
        thresholds[kind] = float(value)
    reranker = Reranker(reranker.weights, reranker.mean, reranker.scale, thresholds)
    path = Path(args.model) / METADATA_FILE
    notes = json.loads(path.read_text()) if path.exists() else {}
    notes.update(languages=sorted(args.languages), reranker=reranker.to_json(),
                 reranker_fit={"corpora": [str(c) for c in args.corpus], "split": args.split,
                               "cases_per_corpus": args.cases, "seed": args.seed, "typed_chars": args.typed_chars,
                               "candidates": len(xs),
                               "exact": int(sum(ys))})
    path.write_text(json.dumps(notes, indent=1) + "\n")
    print("weights:", ", ".join(f"{name} {w:+.2f}" for name, w in zip(FEATURES, reranker.weights)))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
