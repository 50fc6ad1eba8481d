"""Held-out line completions: cut a file's line at a cursor and ask for the rest of the line.

Cursors at the indentation (line start), mid-line and inside an identifier, a third each, drawn with
a fixed seed from the files of one split. The quality bench scores models on them (E2 on the
standard library's test split, E3 on out-of-distribution packages, E4 per language); the reranker is
fitted on the val split, never on what it is evaluated on.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

from rapidfuzz.distance import Levenshtein

from completer.lines import split_lines
from completer.syntax import language_for

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
KINDS = ("indent", "midline", "ident")


@dataclass
class Case:
    kind: str
    path: str
    lines: list[str]  # the document with the cursor line cut at the cursor
    line: int
    character: int
    target: str  # the rest of the line


# A cut in a comment line says little about code completion: skipped, by the file's language.
COMMENT_STARTS = {"python": ("#",), "lua": ("--",)}
C_COMMENTS = ("//", "/*", "*")


def nearest_first(own_path: str, others: list, path_of, seed_key: str) -> list:
    """`others` (files of the project of the file at `own_path`; `path_of` gives each one's path) in
    the order a user would have them open beside it: those in its directory first, then the rest,
    each group shuffled by `seed_key`. The quality bench's workspaces and the replay sessions with
    files open beside them (bench/make_sessions.py --neighbors) are drawn alike."""
    folder = _folder(own_path)
    near = [o for o in others if _folder(path_of(o)) == folder]
    far = [o for o in others if _folder(path_of(o)) != folder]
    rng = random.Random(seed_key)
    rng.shuffle(near)
    rng.shuffle(far)
    return near + far


def _folder(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def read_files(corpus: Path, split: str = "test") -> list[dict]:
    """The files of one split: a gzipped JSON-lines corpus with a "split" field per file (prepare_data,
    prepare_ood), or a corpus builder text file whose name is the split (data/corpus/text/e4-go.jsonl)."""
    if corpus.name.endswith(".gz"):
        with gzip.open(corpus, "rt", encoding="utf-8") as f:
            return [x for x in map(json.loads, f) if x["split"] == split]
    with open(corpus, encoding="utf-8") as f:
        return [json.loads(x) for x in f]


def e2_cases(corpus: Path, n: int, seed: int = 7, split: str = "test") -> list[Case]:
    return line_cases(read_files(corpus, split), n, seed)


def line_cases(files: list[dict], n: int, seed: int = 7) -> list[Case]:
    """n cuts, a third per cursor kind, from `files` ({"path", "text"}), drawn with `seed`."""
    rng = random.Random(seed)
    cases: list[Case] = []
    per_kind = n // len(KINDS)
    for kind in KINDS:
        while sum(c.kind == kind for c in cases) < per_kind:
            f = rng.choice(files)
            lines = split_lines(f["text"])
            i = rng.randrange(len(lines))
            body = lines[i].rstrip("\n")
            stripped = body.strip()
            language = language_for("", f["path"])
            if len(stripped) < 4 or stripped.startswith(COMMENT_STARTS.get(language, C_COMMENTS)):
                continue
            indent = len(body) - len(body.lstrip())
            if kind == "indent":
                col = indent
            elif kind == "midline":
                if len(body) - indent < 6:
                    continue
                col = rng.randint(indent + 2, len(body) - 2)
            else:
                idents = [m for m in _IDENT.finditer(body) if m.start() >= indent]
                if not idents:
                    continue
                m = rng.choice(idents)
                col = rng.randint(m.start() + 1, m.end() - 1)
            target = body[col:]
            if not target.strip():
                continue
            doc = lines[:i] + [body[:col] + ("\n" if lines[i].endswith("\n") else "")] + lines[i + 1:]
            cases.append(Case(kind, f["path"], doc, i, col, target))
    return cases


def score(pred: str, target: str) -> tuple[bool, float]:
    pred, target = pred.split("\n")[0].rstrip(), target.rstrip()
    return pred == target, 1.0 - Levenshtein.normalized_distance(pred, target)
