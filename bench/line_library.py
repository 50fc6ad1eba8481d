"""How much a library of common lines from the training corpus could add at a line start (an oracle).

    python bench/line_library.py [--cases 600] [--e4-cases 150] [--examples 3]

The seed's "static preloading": at a line start, propose the lines that most often follow the line
above in the training corpus, keyed on the previous one or two non-blank lines (stripped). This
measures the most such a library could give before anything is built: for each held-out line-start
cut of E2, E3 and E4 (bench/quality.py's draw, near-copied files left out) whether the exact line is
among the TOP most frequent followers of its key in the training text of its language, and of those
how many the document could not supply (the line occurs nowhere else in it, so no copy can propose
it). A judge would still have to pick it; this is the ceiling. Prints one row per suite, the same
fields every run, and a few of the lines the library alone would hold.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # engine_builds is not installed
from engine_builds.line_cases import Case, eval_suites, leave_out, seen_heldout

KEY_LINES = (1, 2)
TOPS = (1, 4)


def key_above(lines: list[str], line: int, width: int) -> tuple[str, ...]:
    """The `width` non-blank lines above `line`, stripped, top first."""
    found: list[str] = []
    at = line - 1
    while at >= 0 and len(found) < width:
        if lines[at].strip():
            found.append(lines[at].strip())
        at -= 1
    return tuple(reversed(found))


def followers(train: Path, keys: set[tuple[str, ...]], wanted: set[str]) -> tuple[dict, Counter]:
    """For each key in `keys`, a Counter of the stripped lines that follow it in the training text;
    and how often each `wanted` line occurs there at all. One pass, counting only what is asked."""
    after: dict[tuple[str, ...], Counter] = defaultdict(Counter)
    anywhere: Counter = Counter()
    with open(train, encoding="utf-8") as f:
        for raw in f:
            body = [s for s in (x.strip() for x in json.loads(raw)["text"].split("\n")) if s]
            for i, s in enumerate(body):
                if s in wanted:
                    anywhere[s] += 1
                for width in KEY_LINES:
                    if i >= width and (key := tuple(body[i - width:i])) in keys:
                        after[key][s] += 1
    return after, anywhere


def language_of(suite: str) -> str:
    return "python" if suite in ("e2", "e3") else suite.split("-", 1)[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=Path("data/stdlib/corpus.jsonl.gz"))
    ap.add_argument("--ood", type=Path, default=Path("data/ood/corpus.jsonl.gz"))
    ap.add_argument("--text", type=Path, default=Path("data/corpus/text"), help="train-LANGUAGE.jsonl and e4-*.jsonl")
    ap.add_argument("--cases", type=int, default=600)
    ap.add_argument("--e4-cases", type=int, default=150)
    ap.add_argument("--examples", type=int, default=3, help="lines the library alone holds, shown per suite")
    args = ap.parse_args()
    suites, _ = eval_suites(args.corpus, args.cases, "test", args.ood, args.text, args.e4_cases)
    suites = leave_out(suites, seen_heldout())
    starts: dict[str, list[Case]] = {name: [c for c in cases if c.kind == "indent"] for name, cases in suites.items()}
    by_language: dict[str, list[str]] = defaultdict(list)
    for name in starts:
        by_language[language_of(name)].append(name)
    print(f"{'suite':<16}{'line starts':>12}{'in corpus':>10}" +
          "".join(f"{f'key {w}, top {t}':>14}{'not in doc':>11}" for w in KEY_LINES for t in TOPS))
    for language, names in sorted(by_language.items()):
        cuts = [c for name in names for c in starts[name]]
        keys = {key_above(c.lines, c.line, w) for c in cuts for w in KEY_LINES}
        after, anywhere = followers(args.text / f"train-{language}.jsonl", keys, {c.target.strip() for c in cuts})
        for name in names:
            row, shown = [], []
            for width in KEY_LINES:
                for top in TOPS:
                    held = alone = 0
                    for c in starts[name]:
                        line = c.target.strip()
                        if line not in {s for s, _ in after[key_above(c.lines, c.line, width)].most_common(top)}:
                            continue
                        held += 1
                        if line not in {x.strip() for i, x in enumerate(c.lines) if i != c.line}:
                            alone += 1
                            if width == 1 and top == TOPS[-1] and len(shown) < args.examples:
                                shown.append(f"{key_above(c.lines, c.line, 1)[0][:40]!r} -> {line[:60]!r}")
                    row += [held, alone]
            n = len(starts[name])
            in_corpus = sum(anywhere[c.target.strip()] > 0 for c in starts[name])
            print(f"{name:<16}{n:>12}{in_corpus:>10}" + "".join(f"{v:>14}" if i % 2 == 0 else f"{v:>11}"
                                                               for i, v in enumerate(row)), flush=True)
            for s in shown:
                print(f"{'':<16}{s}")


if __name__ == "__main__":
    main()
