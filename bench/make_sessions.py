"""Rebuild the committed replay sessions in bench/sessions/ (run once by a developer; needs network).

The code typed in them is not ours and not in the embedded model's training data (the CPython
standard library): Python files from the pinned packages of the out-of-distribution set
(engine_builds/prepare_ood.py, data/ood), JavaScript from the npm package semver@7.6.3 (ISC), Go
from Debian's golang-1.19-src (BSD-3-Clause). Each file gives a few spans (function bodies, blocks,
lines) retyped by the seeded typist; SOURCES.md lists them with their licenses.

    python -m engine_builds.prepare_ood          # data/ood, if missing
    python bench/make_sessions.py                 # fetches semver and golang-1.19-src into a temp dir
    # a larger Python-only set (no network) for quality in the replay: more files of the same packages
    python bench/make_sessions.py --python-only --more-files 12 --out bench/sessions-python
    # the other languages, from the corpus's held-out E4 projects (engine_builds/corpus.py; no network)
    python bench/make_sessions.py --e4 data/corpus/text --out bench/sessions-e4
    # more of them, other files and spans: sessions that no setting was chosen on
    python bench/make_sessions.py --e4 data/corpus/text --seed 2027 --files-per-language 4 \
        --out bench/sessions-e4-2027 --skip-sessions-in bench/sessions-e4
    # the same sessions with 4 other files of each one's project open beside it (replay them with
    # `completer replay --workspace`); they carry those files' text, so they stay out of the repository
    python bench/make_sessions.py --e4 data/corpus/text --seed 2027 --files-per-language 4 \
        --out runs/sessions-e4-2027-ws --skip-sessions-in bench/sessions-e4 --neighbors 4
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from completer.replay.session import event, write_session
from completer.replay.typist import LANGUAGE_IDS, TypingModel, language_of, synthesize_tree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # engine_builds is not installed
from engine_builds.line_cases import nearest_first, seen_heldout  # noqa: E402

PYTHON_FILES = ["packaging/src/packaging/utils.py", "packaging/src/packaging/_tokenizer.py",
                "attrs/src/attr/converters.py", "attrs/src/attr/_cmp.py"]
JS_PACKAGE, JS_FILES = "semver@7.6.3", ["package/classes/comparator.js", "package/ranges/subset.js"]
GO_DEB, GO_FILES = "golang-1.19-src", ["usr/share/go-1.19/src/path/path.go",
                                       "usr/share/go-1.19/src/container/list/list.go"]
SPANS_PER_FILE = 2
SEED = 2026  # the default; --seed draws other files and spans
# Shorter spans than the typist's default keep one replay of the whole set near four minutes.
MODEL = TypingModel(max_span_chars=220, max_span_lines=8)


def python_sources(work: Path, more_files: int = 0, seed: int = SEED) -> list[tuple[Path, str]]:
    """PYTHON_FILES, or with more_files that many other library files (under src/) of the same
    packages, very short or long ones left out, drawn with seed."""
    corpus = ROOT / "data" / "ood" / "corpus.jsonl.gz"
    manifest = json.loads((ROOT / "data" / "ood" / "manifest.json").read_text())
    licenses = {p["package"]: f"{p['package']} {p['version']} ({p['license']})" for p in manifest["packages"]}
    with gzip.open(corpus, "rt") as f:
        docs = [json.loads(line) for line in f]
    wanted = set(PYTHON_FILES)
    if more_files:
        pool = sorted(d["path"] for d in docs if d["path"] not in wanted and "/src/" in d["path"]
                      and 2_000 <= len(d["text"]) <= 60_000)
        wanted = set(random.Random(seed).sample(pool, min(more_files, len(pool))))
    out = []
    for doc in docs:
        if doc["path"] in wanted:
            path = work / "py" / doc["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(doc["text"])
            out.append((path, licenses[doc["path"].split("/")[0]]))
    return sorted(out)


def js_sources(work: Path) -> list[tuple[Path, str]]:
    subprocess.run(["npm", "pack", JS_PACKAGE, "--silent"], cwd=work, check=True, capture_output=True)
    tgz = next(work.glob("semver-*.tgz"))
    subprocess.run(["tar", "xzf", tgz.name], cwd=work, check=True)
    return [(work / f, f"{JS_PACKAGE} (ISC)") for f in JS_FILES]


def go_sources(work: Path) -> list[tuple[Path, str]]:
    subprocess.run(["apt-get", "download", GO_DEB], cwd=work, check=True, capture_output=True)
    deb = next(work.glob(f"{GO_DEB}_*.deb"))
    subprocess.run(["dpkg-deb", "-x", deb.name, "go"], cwd=work, check=True)
    version = deb.name.split("_")[1]
    return [(work / "go" / f, f"Debian {GO_DEB} {version} (BSD-3-Clause)") for f in GO_FILES]


def e4_sources(work: Path, text: Path, per_language: int, seed: int = SEED,
               skip: dict[str, set[str]] | None = None) -> list[tuple[Path, str]]:
    """per_language files of each language's held-out E4 projects (text/e4-LANG.jsonl), one project
    after another, very short or long ones left out, drawn with seed. skip: per suite (e4-LANG), the
    project/path of files to leave out (line_cases.seen_heldout)."""
    out = []
    for corpus in sorted(text.glob("e4-*.jsonl")):
        if corpus.stem == "e4-python":
            continue
        seen = (skip or {}).get(corpus.stem, set())
        with corpus.open(encoding="utf-8") as f:
            docs = [d for d in map(json.loads, f) if 2_000 <= len(d["text"]) <= 60_000
                    and f"{d['project']}/{d['path']}" not in seen]
        by_project: dict[str, list[dict]] = {}
        for d in sorted(docs, key=lambda d: d["path"]):
            by_project.setdefault(d["project"], []).append(d)
        rng = random.Random(f"{seed}:{corpus.stem}")
        drawn = {project: rng.sample(files, len(files)) for project, files in sorted(by_project.items())}
        picked: list[dict] = []
        while len(picked) < per_language and any(drawn.values()):
            for files in drawn.values():
                if files and len(picked) < per_language:
                    picked.append(files.pop())
        for d in picked:
            path = work / "e4" / d["project"] / d["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(d["text"], encoding="utf-8")
            out.append((path, f"{d['project']} {d['version']} ({d['license']})"))
    return sorted(out)


def project_files(work: Path, e4: Path | None) -> dict[str, list[tuple[str, str]]]:
    """Every file of every project the sessions may come from, as (path under `work`, text), by
    project: the E4 projects (written under work/e4/PROJECT/) or the out-of-distribution Python
    packages (work/py/PACKAGE/). The sessions' own files are among them."""
    projects: dict[str, list[tuple[str, str]]] = {}
    if e4:
        for corpus in sorted(e4.glob("e4-*.jsonl")):
            with corpus.open(encoding="utf-8") as f:
                for d in map(json.loads, f):
                    projects.setdefault(d["project"], []).append((f"e4/{d['project']}/{d['path']}", d["text"]))
    else:
        with gzip.open(ROOT / "data" / "ood" / "corpus.jsonl.gz", "rt") as f:
            for d in map(json.loads, f):
                projects.setdefault(d["path"].split("/")[0], []).append((f"py/{d['path']}", d["text"]))
    return projects


def open_beside(session, own: str, projects: dict[str, list[tuple[str, str]]], count: int, seed: int) -> None:
    """Put `count` other files of the session file's project (`own`: its path under the work dir)
    open before it, drawn from its directory first, then from the rest of the project, seeded by
    its path; each under the synthetic workspace (file:///workspace/<its path in the project>)."""
    project = own.split("/")[1]
    others = [(p, t) for p, t in projects.get(project, []) if p != own and language_of(Path(p)) is not None]
    beside = nearest_first(own, others, lambda f: f[0], f"{seed}:{own}")[:count]
    opens = [event("open", 0, uri="file:///workspace/" + p.split("/", 1)[1], language_id=LANGUAGE_IDS[language_of(Path(p))],
                   version=1, text=t) for p, t in beside]
    session.events[:0] = opens
    session.meta["open_beside"] = [o["uri"] for o in opens]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "sessions")
    ap.add_argument("--python-only", action="store_true", help="Python sessions only (no network)")
    ap.add_argument("--more-files", type=int, default=0, help="Python: this many other files instead of PYTHON_FILES")
    ap.add_argument("--e4", type=Path, default=None, metavar="TEXT",
                    help="instead: files of the held-out E4 projects of every other language (the corpus's text/)")
    ap.add_argument("--files-per-language", type=int, default=2, help="with --e4")
    ap.add_argument("--seed", type=int, default=SEED, help="draws the files and the spans")
    ap.add_argument("--neighbors", type=int, default=0, metavar="N",
                    help="open N other files of each session's project beside it (from its directory first); "
                    "replay with `completer replay --workspace`")
    ap.add_argument("--skip-sessions-in", type=Path, default=None, metavar="DIR",
                    help="leave out the sessions already in DIR (the same file and span), so that the two sets share none")
    ap.add_argument("--skip-seen", action="store_true",
                    help="with --e4: leave out the held-out files that the training text near-copies "
                    "(bench/heldout_seen.json); bench/sessions-e4-2027 was made before this existed")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    skip = {p.name for p in args.skip_sessions_in.glob("*.msgpack")} if args.skip_sessions_in else set()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.e4:
            sources = e4_sources(work, args.e4, args.files_per_language, args.seed,
                                 seen_heldout() if args.skip_seen else None)
        else:
            sources = python_sources(work, args.more_files, args.seed)
        if not args.python_only and not args.e4:
            sources += js_sources(work) + go_sources(work)
        projects = project_files(work, args.e4) if args.neighbors else {}
        for path, origin in sources:
            for session in synthesize_tree([path], SPANS_PER_FILE, args.seed, MODEL):
                session.meta["source"] = f"{origin}: {path.relative_to(work).as_posix().split('/', 1)[-1]}"
                if args.neighbors:
                    open_beside(session, path.relative_to(work).as_posix(), projects, args.neighbors, args.seed)
                name = session.meta["name"]
                if f"{name}.msgpack" in skip:
                    print(f"{name}: in {args.skip_sessions_in}, left out")
                    continue
                write_session(args.out / f"{name}.msgpack", session)
                plan = session.of_kind("plan")[0]
                span = session.meta["span"]
                rows.append(f"| {name} | {session.meta['language']} | {session.meta['source']} | "
                            f"{span['kind']}, lines {span['start_row'] + 1}-{span['end_row']} | {len(plan['text'])} |")
                print(f"{name}: {len(plan['text'])} characters")
    (args.out / "SOURCES.md").write_text(
        "# Replay sessions: where their code comes from\n\n"
        "Made by `bench/make_sessions.py` (seed {seed}); each session opens the file without the span and\n"
        "retypes it. The files keep their licenses; none of them is in the embedded model's training data.\n\n"
        "| session | language | source (license) | span | characters |\n|---|---|---|---|---|\n".format(seed=args.seed)
        + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
