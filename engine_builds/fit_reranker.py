"""Fit the reranker and the gate of a target model (completer/completion/rerank.py) and write its
completer.json.

    python -m engine_builds.fit_reranker --model completer/models/embedded \
        --corpus data/stdlib/corpus.jsonl.gz data/corpus/text/val-python.jsonl --split val --cases 1500 \
        --languages python --threshold 0.45 --typed-chars 3 --workspace 4 --record runs/rerank-val.jsonl.gz

For each held-out line cut (line_cases.py: cursors at the indentation, mid-line and mid-identifier,
drawn from files of the `val` split, never from the evaluation splits) the completer runs as the
server does, with every candidate scored and none withheld; a candidate is a positive example when it
is exactly the rest of the line. A logistic regression (L2, standardised features) over all candidates
then predicts that probability. The same candidates after the user typed the first one to three
characters of the line into them are examples too (feature `typed`): the server decides again on
those without the model (Completer.reconsider), and their rescored log-probabilities alone overrate
them (a rescored 0.4-0.7 was right 41% of the time, 2026-12-05). Thresholds per cursor kind are
written as given (--threshold, --thresholds; a language's own as LANG=P or LANG:KIND=P), since they
are chosen from the replay's precision/recall curve, not from these cases.

With --workspace N every cut is collected twice: with its file alone, and with N other files of its
project open (line_cases.workspace_contexts: the context chunks the server would put in the prompt,
and the files it would search for copies), so the fit sees copies from other files too. The
workspace of a cut of the standard library is its train and val files, never the test files E2 is
cut from. (Measured 2026-12-06, bench/rerank_offline.py: a fit with workspaces chose no better on
E2/E3/E4, with or without the copy's source as an input; the shipped fit has none.)

--record writes every decision (features, labels, each candidate's source) to a file, and
--from-records fits on such files without the model (bench/rerank_offline.py compares fits on them).

The gate is fitted second, on the same cases: one example per decision the server makes (each cut,
and each cut after 1..K typed characters), the features of the candidate the fitted reranker puts
first, positive when the user would take some of it (completer/acceptance.py: all of it, its first
line or its leading whole words, as the replay's typist does). The thresholds apply to the gate's
probability.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from completer.acceptance import decide_accept
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
from engine_builds.line_cases import Case, line_cases, of_split, project_files, read_files, workspace_contexts


def complete_at(completer: Completer, path: str, lines, line: int, character: int,
                context: tuple = (), open_files: tuple = ()) -> CompletionResult:
    """The completion at a cursor of a corpus file, with the document's tree, as the server asks;
    `context` and `open_files` as the server would have them from the workspace."""
    language = language_for("", path)
    snapshot = DocumentSyntax(language, "".join(lines)).snapshot if language else None
    return completer.complete(CompletionRequest(lines, line, character, path=path.rsplit("/", 1)[-1], syntax=snapshot,
                                                context=context, open_files=open_files))


def cases_and_pool(corpus: Path, n: int, seed: int, split: str) -> tuple[list[Case], list[dict]]:
    """n cuts of the `split` files of `corpus`, and the files their workspaces are drawn from
    ({"path", "text", "project"}). The standard library (a .gz corpus) is one project whose workspace
    is its train and val files; a corpus builder's text file names each file's project
    (line_cases.project_files)."""
    if corpus.name.endswith(".gz"):
        stdlib = read_files(corpus, tuple(dict.fromkeys(("train", "val", split))))
        pool = [dict(f, project="stdlib") for f in stdlib if f["split"] in ("train", "val")]
        return line_cases(of_split(stdlib, split), n, seed), pool
    files = project_files(corpus, split)
    return line_cases(files, n, seed), files


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


@dataclass
class Decision:
    """One decision the server makes at a cursor: its candidates' features (FEATURES order) and, for
    each, whether it is exactly the rest of the line and whether the user would take some of it."""
    features: list[list[float]]
    exact: list[bool]
    taken: list[bool]
    sources: list[str] = field(default_factory=list)  # each candidate's (Candidate.source)
    kind: str = ""  # the cut's (line_cases.KINDS)
    typed: int = 0  # characters of the line typed into the candidates
    suite: str = ""  # where the cut comes from, as --record names it
    open_files: int = 0  # other files of the project open (0: the file alone)


def collect(completer: Completer, cases, typed_chars: int = 0, contexts=None, open_files=None,
            suite: str = "", workspace: int = 0) -> list[Decision]:
    """The decision at every case's cursor; with `typed_chars`, also those after the user typed each
    of the target's first 1..typed_chars characters into its candidates (typed_rankings). `contexts`
    and `open_files`: per case, what workspace_contexts gives (`workspace` files open)."""
    decisions = []
    for i, case in enumerate(cases):
        result = complete_at(completer, case.path, case.lines, case.line, case.character,
                             contexts[i] if contexts else (), open_files[i] if open_files else ())
        target = case.target.rstrip()
        rankings = [(0, result.ranked)]
        rankings += [(k, ranked) for k, _, ranked in typed_rankings(completer.notes.reranker, case, result.ranked,
                                                                    typed_chars)]
        for k, ranked in rankings:
            if ranked:
                texts = [s.candidate.text for s in ranked]
                decisions.append(Decision([list(s.features) for s in ranked],
                                          [text.rstrip() == target[k:] for text in texts],
                                          [bool(decide_accept(text, target[k:])[0]) for text in texts],
                                          [s.candidate.source for s in ranked], case.kind, k, suite, workspace))
    return decisions


def write_records(path: Path, decisions: Sequence[Decision]) -> None:
    """One JSON line per decision, gzipped, with the FEATURES they were computed for."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write(json.dumps({"features": list(FEATURES)}) + "\n")
        for d in decisions:
            f.write(json.dumps(dataclasses.asdict(d)) + "\n")


def read_records(path: Path) -> list[Decision]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        head = json.loads(next(f))
        if head.get("features") != list(FEATURES):
            raise SystemExit(f"{path} was recorded with features {head.get('features')}, not this version's")
        return [Decision(**json.loads(line)) for line in f]


def without(decisions: Sequence[Decision], names: Sequence[str]) -> list[Decision]:
    """The decisions with the features `names` held at 0 (a fit on them gives those no weight)."""
    unknown = set(names) - set(FEATURES)
    if unknown:
        raise SystemExit(f"no such features: {', '.join(sorted(unknown))}")
    drop = [FEATURES.index(name) for name in names]
    if not drop:
        return list(decisions)

    def cleared(x: list[float]) -> list[float]:
        x = list(x)
        for i in drop:
            x[i] = 0.0
        return x

    return [dataclasses.replace(d, features=[cleared(x) for x in d.features]) for d in decisions]


def reranker_examples(decisions: Sequence[Decision]) -> tuple[list[list[float]], list[float]]:
    """Every candidate, positive when exactly right."""
    return [x for d in decisions for x in d.features], [float(e) for d in decisions for e in d.exact]


def gate_examples(decisions: Sequence[Decision], reranker: Reranker) -> tuple[list[list[float]], list[float]]:
    """The candidate `reranker` puts first in each decision (the model's own text wins ties, as in
    Reranker.rank), positive when the user would take some of it."""
    from_model = FEATURES.index("from_model")
    xs, ys = [], []
    for d in decisions:
        best = max(range(len(d.features)),
                   key=lambda i: (reranker.probability(d.features[i]), d.features[i][from_model]))
        xs.append(d.features[best])
        ys.append(float(d.taken[best]))
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


def threshold_key(key: str, languages: list[str]) -> str:
    """A --thresholds key checked: KIND, LANGUAGE or LANGUAGE:KIND (Reranker.threshold's order)."""
    language, colon, kind = key.rpartition(":")
    if not colon and key in languages:
        return key
    if kind not in CURSOR_KINDS:
        raise SystemExit(f"--thresholds {key}: the cursor kinds are {', '.join(CURSOR_KINDS)}, "
                         f"the model's languages {', '.join(languages)}")
    if colon and language not in languages:
        raise SystemExit(f"--thresholds {key}: the model's languages are {', '.join(languages)}")
    return key


def scoring_completer(model: str) -> Completer:
    """The model's completer as the server runs it, every candidate scored and none withheld."""
    engine = load_engine(EngineOptions(model=model, compile="off"))
    return Completer(engine, CompletionSettings(multiline=False, deadline_ms=10_000),
                     notes=ModelNotes(reranker=Reranker.neutral()))


def alone_and_open(completer: Completer, cases, pool: list[dict], workspace: int, typed_chars: int, suite: str):
    """(files open, the decisions) for the cases with their file alone, then (unless `workspace` is 0)
    with `workspace` other files of their project open, drawn from `pool` (workspace_contexts)."""
    for open_files in sorted({0, workspace}):
        contexts, files = workspace_contexts(cases, pool, open_files, completer.settings.prompt.budget_tokens) \
            if open_files else (None, None)
        yield open_files, collect(completer, cases, typed_chars, contexts, files, suite, open_files)


def collect_corpora(model: str, corpora: Sequence[Path], cases: int, seed: int, split: str, typed_chars: int,
                    workspace: int) -> list[Decision]:
    """The decisions at `cases` cuts of each corpus's `split` files, each also with `workspace` other
    files of its project open (when not 0), through the model's completer with every candidate scored."""
    completer = scoring_completer(model)
    decisions: list[Decision] = []
    t0 = time.perf_counter()
    for corpus in corpora:
        cuts, pool = cases_and_pool(corpus, cases, seed, split)
        for open_files, found in alone_and_open(completer, cuts, pool, workspace, typed_chars, str(corpus)):
            decisions += found
            print(f"{corpus}, {open_files} files open: {len(found)} decisions, "
                  f"{sum(map(len, (d.exact for d in found)))} candidates, "
                  f"{sum(map(sum, (d.exact for d in found)))} exact ({time.perf_counter() - t0:.0f} s)", flush=True)
    return decisions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="the target model directory (completer.json is written there)")
    ap.add_argument("--corpus", type=Path, nargs="+", default=[Path("data/stdlib/corpus.jsonl.gz")])
    ap.add_argument("--split", default="val")
    ap.add_argument("--cases", type=int, default=1500, help="line cuts per corpus")
    ap.add_argument("--languages", nargs="+", required=True, help="what the model was trained on (others get "
                    "no suggestions)")
    ap.add_argument("--threshold", type=float, default=0.0, help="least probability shown, every cursor kind")
    ap.add_argument("--thresholds", nargs="+", default=[], metavar="KEY=P",
                    help=f"least probability shown for a cursor kind ({', '.join(CURSOR_KINDS)}), a language "
                    "or LANGUAGE:KIND, over --threshold")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--typed-chars", type=int, default=3, metavar="K",
                    help="also fit on each case's candidates after the user typed the target's first 1..K "
                    "characters (how the server reconsiders a withheld suggestion; default 3, 0: none)")
    ap.add_argument("--workspace", type=int, default=0, metavar="N",
                    help="also collect every cut with N other files of its project open (0: the file alone only)")
    ap.add_argument("--record", type=Path, help="write the collected decisions here (.jsonl.gz)")
    ap.add_argument("--from-records", type=Path, nargs="+", metavar="FILE",
                    help="fit on decisions recorded by --record instead of collecting (no model run)")
    ap.add_argument("--without", nargs="+", default=[], metavar="FEATURE",
                    help="features given no weight (held at 0 in the fit)")
    args = ap.parse_args()
    if args.from_records:
        decisions = [d for path in args.from_records for d in read_records(path)]
    else:
        decisions = collect_corpora(args.model, args.corpus, args.cases, args.seed, args.split, args.typed_chars,
                                    args.workspace)
        if args.record:
            write_records(args.record, decisions)
            print(f"recorded {len(decisions)} decisions in {args.record}")
    decisions = without(decisions, args.without)
    xs, ys = reranker_examples(decisions)
    reranker = fit(xs, ys)
    gate_xs, gate_ys = gate_examples(decisions, reranker)
    gate = fit(gate_xs, gate_ys)
    thresholds = {kind: args.threshold for kind in CURSOR_KINDS}
    for item in args.thresholds:
        key, _, value = item.partition("=")
        thresholds[threshold_key(key, args.languages)] = float(value)
    gate = Reranker(gate.weights, gate.mean, gate.scale, thresholds)
    path = Path(args.model) / METADATA_FILE
    notes = json.loads(path.read_text()) if path.exists() else {}
    notes.pop("thresholds_chosen", None)  # said of the reranker's probability; the gate's are chosen anew
    # How the cuts were drawn is known only when they were collected here, not from records.
    drawn = {"records": [str(path) for path in args.from_records]} if args.from_records else \
        {"split": args.split, "cases_per_corpus": args.cases, "seed": args.seed, "typed_chars": args.typed_chars}
    notes.update(languages=sorted(args.languages), reranker=reranker.to_json(), gate=gate.to_json(),
                 reranker_fit={"corpora": list(dict.fromkeys(d.suite for d in decisions)), **drawn,
                               "workspace": sorted({d.open_files for d in decisions}), "without": args.without,
                               "candidates": len(xs), "exact": int(sum(ys)),
                               "decisions": len(gate_xs), "taken": int(sum(gate_ys))})
    path.write_text(json.dumps(notes, indent=1) + "\n")
    for name, model in (("reranker", reranker), ("gate", gate)):
        print(f"{name} weights:", ", ".join(f"{f} {w:+.2f}" for f, w in zip(FEATURES, model.weights)))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
