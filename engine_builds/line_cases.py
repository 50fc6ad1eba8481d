"""Held-out line completions: cut a file's line at a cursor and ask for the rest of the line.

Cursors at the indentation (line start), mid-line and inside an identifier, a third each, drawn with
a fixed seed from the files of one split. The quality bench scores models on them (E2 on the
standard library's test split, E3 on out-of-distribution packages, E4 per language); the reranker is
fitted on the val split, never on what it is evaluated on. A cut can also get the workspace the
server would have had the user opened other files of its project (workspace_contexts).
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


WORKSPACE_ROOT = Path("/workspace-of-the-bench")  # never read: ContextRing only needs paths inside a root


def workspace_contexts(cases: list[Case], pool: list[dict], open_files: int, budget_tokens: int,
                       seed: int = 11, imports: bool = False) -> tuple[list[tuple], list[tuple]]:
    """For each case, the context chunks the language server would choose, and the other open files
    it would search for copies (lsp/context_updates.py:
    the ring of recently opened files, selected by identifiers shared with the lines around the
    cursor, within the server's share of the prompt) had the user opened `open_files` other files of
    the case's project: drawn at random (seeded by the case's path) from its directory, then from the
    rest of the project. The case file itself is never among them. With `imports`, the declarations
    of the project files that the case's document imports too (completion/imports.py), read from a
    copy of the suite's files written to a temporary folder, as the server reads them from disk.
    `pool`: the suite's corpus files, {"path", "text", "project"}."""
    import contextlib
    import tempfile

    from completer.completion.context import ContextRing, Workspace
    from completer.completion.imports import import_definitions
    from lsp.context_updates import AROUND_LINES, CONTEXT_SHARE, IMPORT_SHARE, LOCAL_LINES

    by_project: dict[str, list[dict]] = {}
    for f in pool:
        by_project.setdefault(f["project"], []).append(f)
    path_project = {f["path"]: f["project"] for f in pool}  # paths are unique within a suite
    budget = int(budget_tokens * CONTEXT_SHARE * 4)
    out, files = [], []
    with tempfile.TemporaryDirectory(prefix="completer-suite-") if imports else contextlib.nullcontext() as disk:
        root = Path(disk) if imports else WORKSPACE_ROOT
        if imports:
            for f in pool:
                where = root / f["path"]
                where.parent.mkdir(parents=True, exist_ok=True)
                where.write_text(f["text"], encoding="utf-8", errors="surrogatepass")
        workspace = Workspace(root, user_config=False)  # the same on every machine, built once
        for c in cases:
            project = path_project.get(c.path, "")
            others = [f for f in by_project.get(project, []) if f["path"] != c.path]
            ring = ContextRing(workspace)
            for f in nearest_first(c.path, others, lambda f: f["path"], f"{seed}:{project}:{c.path}")[:open_files]:
                ring.note(str(root / f["path"]), f["text"])
            line = c.line
            around = "".join(c.lines[max(0, line - AROUND_LINES):line + 1])
            local = "".join(c.lines[max(0, line - LOCAL_LINES):line + LOCAL_LINES // 4])
            language = language_for("", c.path)
            document = "".join(c.lines).encode("utf-8", "surrogatepass")
            chunks = import_definitions(workspace, str(root / c.path), document, language, int(budget * IMPORT_SHARE)) \
                if imports and language else []
            out.append(ring.select(str(root / c.path), around, local, budget, chunks))
            files.append(ring.open_files(str(root / c.path)))
    return out, files


def _folder(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


def read_files(corpus: Path, split: str | tuple[str, ...] = "test") -> list[dict]:
    """The files of one split (or of several, one split after the other, read once): a gzipped
    JSON-lines corpus with a "split" field per file (prepare_data, prepare_ood), or a corpus builder
    text file whose name is the split (data/corpus/text/e4-go.jsonl)."""
    if corpus.name.endswith(".gz"):
        with gzip.open(corpus, "rt", encoding="utf-8") as f:
            files = list(map(json.loads, f))
        return [x for part in ((split,) if isinstance(split, str) else split) for x in files if x["split"] == part]
    with open(corpus, encoding="utf-8") as f:
        return [json.loads(x) for x in f]


def of_split(files: list[dict], split: str) -> list[dict]:
    """Those of `files` in `split`, in their order (as read_files(corpus, split) gives them)."""
    return [f for f in files if f["split"] == split]


def project_files(corpus: Path, split: str = "test") -> list[dict]:
    """A corpus builder text file's files, their paths made unique by their project (two projects may
    both have an args.go); the requests name the file only, and the draw does not depend on paths."""
    return [dict(f, path=f"{f['project']}/{f['path']}") for f in read_files(corpus, split)]


def e2_cases(corpus: Path, n: int, seed: int = 7, split: str = "test") -> list[Case]:
    return line_cases(read_files(corpus, split), n, seed)


def eval_suites(corpus: Path, cases: int, split: str = "test", ood: Path | None = None, e4: Path | None = None,
                e4_cases: int = 150) -> tuple[dict[str, list[Case]], dict[str, list[dict]]]:
    """The evaluation suites by name (e2, e3, e4-LANGUAGE), and the files each one's workspaces are drawn
    from ({"path", "text", "project"}; workspace_contexts): the whole standard library for E2 (its
    train files included: a CPython developer's workspace), the suite's own projects for E3 and E4."""
    stdlib = read_files(corpus, ("train", "val", "test"))
    suites = {"e2": line_cases(of_split(stdlib, split), cases)}
    pools = {"e2": [dict(f, project="stdlib") for f in stdlib]}
    if ood:
        packages = read_files(ood)
        suites["e3"] = line_cases(packages, cases)
        pools["e3"] = [dict(f, project=f["path"].split("/", 1)[0]) for f in packages]
    for path in sorted(e4.glob("e4-*.jsonl")) if e4 else ():
        language = path.stem.split("-", 1)[1]
        if language != "python":  # E2 and E3 are the Python hold-outs
            files = project_files(path)
            suites[f"e4-{language}"] = line_cases(files, e4_cases)
            pools[f"e4-{language}"] = files
    return suites, pools


def leave_out(suites: dict[str, list[Case]], paths: dict[str, set[str]]) -> dict[str, list[Case]]:
    """The suites without the cuts in `paths` (per suite; seen_heldout): the same draw, those cuts
    out, so that scores with and without them compare case for case."""
    return {name: [c for c in cases if c.path not in paths.get(name, ())] for name, cases in suites.items()}


SEEN_FILE = Path(__file__).resolve().parent.parent / "bench" / "heldout_seen.json"


def seen_heldout(path: Path = SEEN_FILE) -> dict[str, set[str]]:
    """Per suite, the held-out files that the training text near-copies (engine_builds.corpus_nearcopy
    seen): a model trained on that text has seen them, so its score on them is memory."""
    suites = json.loads(path.read_text())["suites"]
    return {suite: {f["path"] for f in files} for suite, files in suites.items()}


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
