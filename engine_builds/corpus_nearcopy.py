"""Near-copies of held-out files in the training text, found by the distinctive lines they share.

The builder's dedup drops exact and whitespace-identical copies of a held-out file. It misses other
versions of the same text: setuptools vendors its own distutils (E2 holds the standard library's),
rocksdb began as a fork of leveldb (E4 C++), luarocks ships its copy of argparse.lua (E4 Lua). A
model trained on those has seen the held-out text, and its score there measures memory, not
completion on code it has never seen.

The evidence is lines. A line is distinctive when, stripped, it has at least MIN_CHARS characters
and occurs in at most COMMON_FILES training files: license headers, include and import blocks occur
in many files and say nothing about copying. A file near-copies another side when at least
COPY_SHARE of its distinctive lines (and MIN_LINES of them) occur there; a training file also does
when it holds COPY_SHARE of one held-out file's distinctive lines (a fork that grew). Pairs within
one project do not count: E2 is the standard library's test split beside its own training split, by
design.

Two uses: the builder drops training files that near-copy a held-out file (`near_copies`, drop
reason `near-heldout`), and `seen` lists the held-out files that earlier training text near-copied,
so the quality bench can leave them out when it scores models trained on that text
(bench/heldout_seen.json).

    python -m engine_builds.corpus_nearcopy seen --out bench/heldout_seen.json
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

MIN_CHARS = 25
COMMON_FILES = 5
COPY_SHARE = 0.5
MIN_LINES = 5


def line_keys(text: str) -> set[int]:
    """Stable 64-bit keys of the file's distinct stripped lines of MIN_CHARS or more characters."""
    keys = set()
    for line in text.split("\n"):
        line = line.strip()
        if len(line) >= MIN_CHARS:
            keys.add(int.from_bytes(hashlib.blake2b(line.encode("utf-8", "surrogatepass"), digest_size=8).digest(),
                                    "little"))
    return keys


@dataclass(frozen=True)
class Doc:
    project: str
    path: str
    text: str


@dataclass(frozen=True)
class Seen:
    """A held-out file that the training text near-copies."""
    path: str
    share: float  # of its distinctive lines, the share that occurs in training files
    lines: int  # its distinctive lines
    source: str  # the training project most of the shared lines occur in


class TrainingLines:
    """How many training files hold each line key (df), and one project that holds it; from each
    training file's (project, line_keys)."""

    def __init__(self, files: Iterable[tuple[str, set[int]]]):
        self.df: collections.Counter[int] = collections.Counter()
        self.project: dict[int, str] = {}
        for project, keys in files:
            for key in keys:
                self.df[key] += 1
                self.project.setdefault(key, project)

    def distinctive(self, keys: Iterable[int]) -> list[int]:
        """Those of `keys` in at most COMMON_FILES training files."""
        return [k for k in keys if self.df[k] <= COMMON_FILES]


def _share(hits: int, total: int) -> float:
    return hits / total if total >= MIN_LINES else 0.0


def near_copies(training: Sequence[Doc], heldout: Sequence[Doc]) -> list[int]:
    """Indices of the `training` files that near-copy a `heldout` file of another project: COPY_SHARE
    of the training file's distinctive lines are held-out lines, or it holds COPY_SHARE of one held-out
    file's (a fork that grew: rocksdb's slice.h holds most of leveldb's, and much more). One language
    at a time: lines rarely cross languages, and the index stays small."""
    training_keys = [line_keys(doc.text) for doc in training]  # hashed once: the index and the check read them
    index = TrainingLines((doc.project, keys) for doc, keys in zip(training, training_keys))
    held: dict[int, list[int]] = collections.defaultdict(list)  # distinctive key -> held-out files with it
    size = []  # each held-out file's distinctive lines
    for j, doc in enumerate(heldout):
        keys = index.distinctive(line_keys(doc.text))
        size.append(len(keys))
        for k in keys:
            held[k].append(j)
    if not held:
        return []
    out = []
    for i, (doc, keys) in enumerate(zip(training, training_keys)):
        distinctive = index.distinctive(keys)
        per_file: collections.Counter[int] = collections.Counter()
        hits = 0
        for k in distinctive:
            others = [j for j in held.get(k, ()) if heldout[j].project != doc.project]
            hits += bool(others)
            per_file.update(others)
        if hits and (_share(hits, len(distinctive)) >= COPY_SHARE
                     or any(_share(n, size[j]) >= COPY_SHARE for j, n in per_file.items())):
            out.append(i)
    return out


def seen(heldout: Sequence[Doc], training: Iterable[Doc]) -> list[Seen]:
    """The `heldout` files whose distinctive lines occur in training files of other projects, at
    COPY_SHARE or more, most copied first."""
    own = {d.project for d in heldout}
    index = TrainingLines((doc.project, line_keys(doc.text)) for doc in training if doc.project not in own)
    out = []
    for doc in heldout:
        distinctive = index.distinctive(line_keys(doc.text))
        shared = [k for k in distinctive if index.df[k]]
        share = _share(len(shared), len(distinctive))
        if share >= COPY_SHARE:
            source = collections.Counter(index.project[k] for k in shared).most_common(1)[0][0]
            out.append(Seen(doc.path, round(share, 3), len(distinctive), source))
    return sorted(out, key=lambda s: (-s.share, s.path))


def seen_by_suite(text_dir: Path, stdlib: Path, ood: Path) -> dict[str, list[Seen]]:
    """For each evaluation suite of bench/quality.py (e2, e3, e4-LANGUAGE), its files that the
    training text of `text_dir` (train and val) near-copies, with the paths the suites give them."""
    from engine_builds.corpus_tokenizer import read_docs
    from engine_builds.line_cases import project_files, read_files

    def training(language: str) -> Iterable[Doc]:
        for split in ("train", "val"):
            path = text_dir / f"{split}-{language}.jsonl"
            if path.exists():
                for f in read_docs(path):
                    yield Doc(f["project"], f["path"], f["text"])

    # E2 is the standard library's test split: its own project's training files are left out of the
    # count by `seen` (the held-out project is skipped), as the design of E2 wants.
    suites = {"e2": ("python", [Doc("cpython-stdlib", f["path"], f["text"]) for f in read_files(stdlib, "test")]),
              "e3": ("python", [Doc(f["path"].split("/", 1)[0], f["path"], f["text"]) for f in read_files(ood)])}
    for path in sorted(text_dir.glob("e4-*.jsonl")):
        language = path.stem.split("-", 1)[1]
        if language != "python":
            suites[f"e4-{language}"] = (language, [Doc(f["project"], f["path"], f["text"])
                                                   for f in project_files(path)])
    out = {}
    for suite, (language, docs) in suites.items():
        out[suite] = seen(docs, training(language))
        print(f"{suite}: {len(out[suite])} of {len(docs)} files near-copied in training", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    s = sub.add_parser("seen", help="list the held-out files the training text near-copies, by suite")
    s.add_argument("--text", type=Path, default=Path("data/corpus/text"))
    s.add_argument("--stdlib", type=Path, default=Path("data/stdlib/corpus.jsonl.gz"))
    s.add_argument("--ood", type=Path, default=Path("data/ood/corpus.jsonl.gz"))
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--note", default="", help="what training text this was measured against")
    args = ap.parse_args(argv)
    found = seen_by_suite(args.text, args.stdlib, args.ood)
    report = {"note": args.note, "rule": {"min_chars": MIN_CHARS, "common_files": COMMON_FILES,
                                          "copy_share": COPY_SHARE, "min_lines": MIN_LINES},
              "suites": {suite: [vars(s) for s in files] for suite, files in found.items()}}
    args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
