"""Line-completion quality of trained models through our own completer pipeline, and the run summary.

    python -m engine_builds.gpu_eval lines --model runs/gpu/target-s/hf --pack data/gpu_pack --cases 150 \\
        --device cuda --deadline EPOCH --json runs/gpu/target-s/eval.json
    python -m engine_builds.gpu_eval summary --run runs/gpu --models draft,target-s --json OUT/results.json

`lines`: E2 (the standard library's held-out test files), E3 (out-of-distribution Python packages) and
E4 (held-out projects per language), read from the GPU pack's text/{split}-{lang}.xz (the same files
as data/corpus/text/{split}-{lang}.jsonl: every evaluation split is packed whole). Cuts as
line_cases.py makes them (cursor at the indentation, mid-line, mid-identifier; the rest of the line
is the target), `--cases` per suite and language, completed by
completer.completion.pipeline.Completer over load_engine(EngineOptions(model=DIR, device=...)) with
each document's tree, as the language server gives it; exact match and edit similarity as
bench/quality.py scores them. Cases run interleaved across suites and cursor kinds, so a --deadline
that stops the run early leaves every suite with a balanced part of its cases (the JSON says how many).

`summary`: one JSON with everything (training logs, evaluations, the prediction, phase timings) and a
short table: quality against size, tokens seen, tokens/s.
"""

from __future__ import annotations

import argparse
import json
import lzma
import sys
import time
from pathlib import Path

SUITES = (("e2", "python"), ("e3", "python"))  # then e4 per language, except python (E2 and E3 are its hold-outs)


def read_pack_files(pack: Path, split: str, lang: str) -> list[dict]:
    """The documents of one packed (split, language) file: {"path", "project", "package", "text"}."""
    from engine_builds.corpus_pack import SEP

    data = lzma.decompress((pack / "text" / f"{split}-{lang}.xz").read_bytes()).decode("utf-8")
    texts = data.split(SEP) if data else []
    docs = [json.loads(x) for x in lzma.decompress((pack / "text" / f"{split}-{lang}.docs.xz").read_bytes())
            .decode("utf-8").splitlines()]
    if len(docs) != len(texts):
        raise ValueError(f"{pack}: {split}-{lang} has {len(texts)} texts but {len(docs)} documents")
    return [{**d, "text": t} for d, t in zip(docs, texts)]


def suites_of(pack: Path) -> list[tuple[str, str]]:
    contents = json.loads((pack / "pack.json").read_text())["contents"]
    out = [s for s in SUITES if s[1] in contents.get(s[0], {})]
    out += [("e4", lang) for lang in sorted(contents.get("e4", {})) if lang != "python"]
    return out


def interleave(groups: list[list]) -> list:
    """Round-robin over groups: the k-th item of each group, then the (k+1)-th..."""
    out = []
    for k in range(max((len(g) for g in groups), default=0)):
        out += [g[k] for g in groups if k < len(g)]
    return out


def run_lines(args) -> dict:
    from completer.completion.pipeline import Completer, CompletionRequest, CompletionSettings
    from completer.engines.loading import load_engine
    from completer.engines.options import EngineOptions
    from completer.syntax import DocumentSyntax, language_for
    from engine_builds.line_cases import KINDS, line_cases, score

    t0 = time.time()
    suites = suites_of(args.pack)
    if args.suites:
        wanted = set(args.suites.split(","))
        suites = [s for s in suites if f"{s[0]}-{s[1]}" in wanted]
    planned = {}
    for split, lang in suites:
        cases = line_cases(read_pack_files(args.pack, split, lang), args.cases, seed=args.seed)
        by_kind = [[c for c in cases if c.kind == k] for k in KINDS]
        planned[f"{split}-{lang}"] = interleave(by_kind)
    order = interleave([[(name, c) for c in cases] for name, cases in planned.items()])
    t_cases = time.time() - t0
    engine = load_engine(EngineOptions(model=str(args.model), device=args.device))
    completer = Completer(engine, CompletionSettings(multiline=False, deadline_ms=10_000, min_confidence=0.0))
    t_load = time.time() - t0 - t_cases
    rows: dict[str, dict[str, list]] = {name: {k: [] for k in KINDS} for name in planned}
    prompt_tokens = 0
    t_run = time.perf_counter()
    stopped = False
    for name, c in order:
        if args.deadline and time.time() >= args.deadline:
            stopped = True
            break
        language = language_for("", c.path)
        snap = DocumentSyntax(language, "".join(c.lines)).snapshot if language else None
        r = completer.complete(CompletionRequest(c.lines, c.line, c.character, path=c.path.rsplit("/", 1)[-1],
                                                 syntax=snap))
        rows[name][c.kind].append(score(r.text, c.target))
        prompt_tokens += r.stats.prompt_tokens
    done = sum(len(v) for kinds in rows.values() for v in kinds.values())
    run_s = time.perf_counter() - t_run
    result = {"model": str(args.model), "params": engine.describe().get("parameters"), "device": args.device,
              "cases_per_suite": args.cases, "cases_planned": len(order), "cases_done": done,
              "stopped_by_deadline": stopped, "ms_per_case": round(1000 * run_s / max(1, done), 1),
              "prompt_tokens_per_case": round(prompt_tokens / max(1, done), 1),
              "seconds": {"cases": round(t_cases, 1), "load": round(t_load, 1), "run": round(run_s, 1)},
              "suites": {}}
    for name, kinds in rows.items():
        entry = {}
        for k in (*KINDS, "all"):
            data = [x for v in kinds.values() for x in v] if k == "all" else kinds[k]
            entry[k] = {"n": len(data), "em": round(100 * sum(e for e, _ in data) / max(1, len(data)), 2),
                        "es": round(100 * sum(s for _, s in data) / max(1, len(data)), 2)}
        result["suites"][name] = entry
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"{Path(args.model).parent.name}: {done}/{len(order)} cases in {run_s:.0f}s "
          f"({result['ms_per_case']} ms/case){' - stopped by the deadline' if stopped else ''}; "
          + ", ".join(f"{n} {e['all']['em']:.1f}/{e['all']['es']:.1f}" for n, e in result["suites"].items()),
          flush=True)
    return result


# ---- summary ---------------------------------------------------------------------------------------

def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def summarize(run: Path, models: list[str]) -> dict:
    out: dict = {"models": {}, "prediction": _load(run / "prediction.json"), "unpack": None, "phases": {},
                 "machine": (run / "machine.txt").read_text() if (run / "machine.txt").exists() else ""}
    for marker in run.glob("corpus/tokens/unpack.json"):
        out["unpack"] = _load(marker)
    if (run / "phases.tsv").exists():
        for line in (run / "phases.tsv").read_text().splitlines():
            name, _, seconds = line.partition("\t")
            out["phases"][name] = float(seconds or 0)
    if (run / "returned.txt").exists():
        out["returned_files"] = (run / "returned.txt").read_text().split()
    for name in models:
        log = _load(run / name / "hf" / "train_log.json")
        ev = _load(run / name / "eval.json")
        entry: dict = {"train": log, "eval": ev}
        if log:
            entry.update(params=log["params"], preset=log["preset"], steps=log["steps"], tokens=log["tokens"],
                         tokens_per_second=log["tokens_per_second"], val=log["best_val_target_loss"],
                         val_by_language=log["best_val_by_set"])
        if ev:
            s = ev["suites"]
            e4 = [v["all"] for k, v in s.items() if k.startswith("e4-") and v["all"]["n"]]
            entry.update(e2=s.get("e2-python", {}).get("all"), e3=s.get("e3-python", {}).get("all"),
                         e4={"em": _mean([x["em"] for x in e4]), "es": _mean([x["es"] for x in e4]),
                             "languages": len(e4), "n": sum(x["n"] for x in e4)},
                         cases_done=ev["cases_done"], cases_planned=ev["cases_planned"], ms_per_case=ev["ms_per_case"])
        out["models"][name] = entry
    return out


def _num(x: float) -> str:
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.{1 if x < 10 * div else 0}f}{unit}"
    return f"{x:.0f}"


def print_summary(res: dict) -> None:
    def pair(x):
        return f"{x['em']:5.1f} /{x['es']:5.1f}" if x and x.get("n") and x.get("em") is not None else "    -   "

    models = res["models"]
    langs = sorted({lang for m in models.values() for lang in (m.get("val_by_language") or {})})
    if langs:
        print("\nheld-out (val) loss on target tokens, nats, best checkpoint:")
        print(f"{'model':<12}" + "".join(f"{lang[:10]:>11}" for lang in langs))
        for name, m in models.items():
            v = m.get("val_by_language") or {}
            print(f"{name:<12}" + "".join(f"{v[lang]:>11.3f}" if lang in v else f"{'-':>11}" for lang in langs))
    e4_langs = sorted({k[3:] for m in models.values() if m.get("eval") for k in m["eval"]["suites"] if k.startswith("e4-")})
    if e4_langs:
        print("\nE4 per language, EM / ES (%):")
        print(f"{'model':<12}" + "".join(f"{lang[:12]:>14}" for lang in e4_langs))
        for name, m in models.items():
            s = (m.get("eval") or {}).get("suites", {})
            print(f"{name:<12}" + "".join(f"{pair(s.get('e4-' + lang, {}).get('all')):>14}" for lang in e4_langs))
    phases = res.get("phases") or {}
    if phases:
        print("\nphases (s): " + ", ".join(f"{k} {v:.0f}" for k, v in phases.items()))
    print("\nresults (E2/E3/E4: exact match / edit similarity %, E4 the mean over languages; val: mean target "
          "loss, nats; tok/s measured after warm-up, pred. the H200 prediction)")
    predicted = {r["preset"]: r["tokens_per_s_shared"] for r in (res.get("prediction") or {}).get("rows", [])}
    print(f"{'model':<12}{'params':>11}{'steps':>8}{'tokens':>9}{'tok/s':>8}{'pred.':>8}{'val':>7}{'E2':>14}{'E3':>14}"
          f"{'E4':>14}{'cases':>11}{'ms/case':>8}")
    for name, m in models.items():
        if not m.get("train"):
            print(f"{name:<12}  (no trained model: see {name}.log)")
            continue
        cases = f"{m['cases_done']}/{m['cases_planned']}" if m.get("eval") else "-"
        pred = predicted.get(m["preset"])
        print(f"{name:<12}{m['params']:>11,}{m['steps']:>8}{_num(m['tokens']):>9}{_num(m['tokens_per_second']):>8}"
              f"{_num(pred) if pred else '-':>8}{m['val']:>7.3f}{pair(m.get('e2')):>14}{pair(m.get('e3')):>14}{pair(m.get('e4')):>14}{cases:>11}"
              f"{m.get('ms_per_case', 0) or 0:>8.0f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("lines", help="E2/E3/E4 line completions of one model")
    a.add_argument("--model", type=Path, required=True)
    a.add_argument("--pack", type=Path, default=Path("data/gpu_pack"))
    a.add_argument("--cases", type=int, default=150, help="per suite and language")
    a.add_argument("--suites", default="", help="only these, e.g. e2-python,e4-go")
    a.add_argument("--seed", type=int, default=7)
    a.add_argument("--device", default="cuda")
    a.add_argument("--deadline", type=float, default=0.0, help="seconds since the epoch: stop starting cases then")
    a.add_argument("--json", type=Path)
    s = sub.add_parser("summary", help="results.json and the results table")
    s.add_argument("--run", type=Path, default=Path("runs/gpu"))
    s.add_argument("--models", required=True, help="comma-separated model names (directories under --run)")
    s.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if args.cmd == "lines":
        run_lines(args)
        return
    res = summarize(args.run, [m for m in args.models.split(",") if m])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1) + "\n")
    print_summary(res)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
