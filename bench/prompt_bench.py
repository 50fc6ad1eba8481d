"""Per-keystroke cost of keeping the syntax tree current and building the prompt (CPU, one core's
worth of Python). Prints the same fields every run.

    python bench/prompt_bench.py [--file F] [--lines 2000] [--model embedded]

Types one line, character by character, in the middle of a 2,000-line Python file through the
language server's own document store: each keystroke applies the LSP edit, re-parses
incrementally, and builds the budgeted Contract 1 prompt, with syntax-aware windows and without.
Then moves the cursor down the file a line at a time (an Enter or an arrow key: new windows) and
jumps to places it has not seen (a newly opened file's first key), building the prompt with the
windows encoded a line at a time (the tokenizer's cache of lines, the default) and, in the same
run, with each window encoded whole (as before 2026-12-07).
"""

from __future__ import annotations

import argparse
import statistics
import sysconfig
import time
from pathlib import Path

from completer.completion.fim import detect_template
from completer.completion.prompt import PromptSettings, build_prompt
from completer.engines.model_dirs import resolve_model
from completer.lines import split_lines
from completer.tokenizer import Tokenizer
from lsp.documents import Document


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", type=Path, default=Path(sysconfig.get_paths()["stdlib"]) / "typing.py")
    ap.add_argument("--lines", type=int, default=2000)
    ap.add_argument("--model", default=None)
    args = ap.parse_args()
    text = "".join(split_lines(args.file.read_text(encoding="utf-8"))[:args.lines])
    tok = Tokenizer(resolve_model(args.model))
    tpl = detect_template(tok)
    doc = Document.from_text("file:///bench.py", "python", 1, text)
    row = len(doc.lines) // 2
    typed = "        result = self._validate(value, strict=True) or default_factory()"
    timings: dict[str, list[float]] = {"edit+reparse": [], "prompt (syntax)": [], "prompt (lines)": []}
    doc.apply_change((row, 0), (row, 0), "\n", "utf-16")
    doc.snapshot  # reading the tree brings it up to date (incrementally)
    for i, ch in enumerate(typed):
        t0 = time.perf_counter()
        doc.apply_change((row, i), (row, i), ch, "utf-16")
        snapshot = doc.snapshot
        t1 = time.perf_counter()
        build_prompt(tok, tpl, doc.lines, row, i + 1, path="bench.py", syntax=snapshot)
        t2 = time.perf_counter()
        build_prompt(tok, tpl, doc.lines, row, i + 1, path="bench.py", settings=PromptSettings(syntax=False))
        t3 = time.perf_counter()
        timings["edit+reparse"].append((t1 - t0) * 1000)
        timings["prompt (syntax)"].append((t2 - t1) * 1000)
        timings["prompt (lines)"].append((t3 - t2) * 1000)
    whole = Tokenizer(resolve_model(args.model))
    whole.encodes_lines_apart = False  # each window encoded as one text
    moves = {"line moved, by lines": [], "line moved, whole": [], "first key, by lines": [], "first key, whole": []}
    snapshot = doc.snapshot
    rows = range(len(doc.lines) // 4, len(doc.lines) // 4 + 60)
    for tokenizer, how in ((tok, "by lines"), (whole, "whole"), (tok, "by lines"), (whole, "whole")):
        for r in rows:  # interleaved twice, so drift on a shared machine hits both alike
            t0 = time.perf_counter()
            build_prompt(tokenizer, tpl, doc.lines, r, 4, path="bench.py", syntax=snapshot)
            moves[f"line moved, {how}"].append((time.perf_counter() - t0) * 1000)
    for r in range(100, len(doc.lines) - 100, 97):
        for tokenizer, how in ((tok, "by lines"), (whole, "whole")):
            tokenizer.clear_caches()  # nothing of this file seen: a newly opened file
            t0 = time.perf_counter()
            build_prompt(tokenizer, tpl, doc.lines, r, 4, path="bench.py", syntax=snapshot)
            moves[f"first key, {how}"].append((time.perf_counter() - t0) * 1000)
    timings |= {f"prompt, {name}": values for name, values in moves.items()}
    total = [a + b for a, b in zip(timings["edit+reparse"], timings["prompt (syntax)"])]
    print(f"{args.file.name}: {len(doc.lines)} lines, {len(text.encode()) / 1024:.0f} KiB; {len(typed)} keystrokes\n")
    print(f"{'per keystroke':<32}{'median ms':>10}{'p95 ms':>9}")
    for name, values in (*timings.items(), ("edit+reparse+prompt", total)):
        values = sorted(values)
        print(f"{name:<32}{statistics.median(values):>10.2f}{values[int(0.95 * (len(values) - 1))]:>9.2f}")


if __name__ == "__main__":
    main()
