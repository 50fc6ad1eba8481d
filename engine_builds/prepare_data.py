"""Deterministic data preparation for the embedded model: the CPython standard library source that
ships with this interpreter (PSF-2.0, tests included), split by file, plus the tokenizer.

    python -m engine_builds.prepare_data [--out data/stdlib] [--seed 1234] [--vocab-size 8192]

Writes:
    OUT/corpus.jsonl.gz   one {"path", "package", "split", "text"} per file, sorted by path
    OUT/manifest.json     files with split, sha256, characters and tokens; license; seed; totals
    OUT/tokenizer/        tokenizer.json (+ tokenizer_config.json) trained on the train split only

The split is by file (a hash of path and seed), never by line, so no held-out line was seen in
training; `test` files are the evaluation hold-out (E2), `val` files drive training-time evaluation.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import json
import sys
import sysconfig
import warnings
from pathlib import Path

from engine_builds.train_tokenizer import save, train_tokenizer

SPLITS = (("train", 0.90), ("val", 0.03), ("test", 0.07))
MAX_FILE_CHARS = 400_000  # pydoc_data/topics.py and a few generated tables are not code worth learning
SKIP_DIRS = {"site-packages", "__pycache__", "idlelib/Icons", "lib2to3/tests/data", "test/tokenizedata",
             "test/test_lib2to3/data", "ensurepip/_bundled", "config-3"}


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def split_of(rel_path: str, seed: int) -> str:
    h = int.from_bytes(hashlib.sha256(f"{seed}:{rel_path}".encode()).digest()[:8], "big") / 2**64
    acc = 0.0
    for name, share in SPLITS:
        acc += share
        if h < acc:
            return name
    return SPLITS[-1][0]


def package_of(rel_path: str) -> str:
    """Files of one directory form a 'package' for repo-level context chunks."""
    parent = str(Path(rel_path).parent)
    return "" if parent == "." else parent


def collect(root: Path) -> list[tuple[str, str]]:
    files = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if any(part in rel for part in SKIP_DIRS):
            continue
        try:
            text = path.read_bytes().decode("utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if not text.strip() or len(text) > MAX_FILE_CHARS:
            continue
        try:  # files that do not parse (bad-syntax test data) teach the wrong thing
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        files.append((rel, text.replace("\r\n", "\n")))
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/stdlib"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--vocab-size", type=int, default=8192)
    args = ap.parse_args()
    root = stdlib_root()
    files = collect(root)
    rows = [{"path": rel, "package": package_of(rel), "split": split_of(rel, args.seed), "text": text}
            for rel, text in files]
    train_texts = [r["text"] for r in rows if r["split"] == "train"]
    print(f"{len(rows)} files from {root}; training the tokenizer on {len(train_texts)} train files", flush=True)
    tok = train_tokenizer(train_texts, args.vocab_size)
    args.out.mkdir(parents=True, exist_ok=True)
    save(tok, args.out / "tokenizer", 2048)

    totals: dict[str, dict[str, int]] = {s: {"files": 0, "chars": 0, "tokens": 0} for s, _ in SPLITS}
    manifest_files = []
    encodings = tok.encode_batch([r["text"] for r in rows])
    for r, enc in zip(rows, encodings):
        n_tok = len(enc.ids)
        t = totals[r["split"]]
        t["files"] += 1
        t["chars"] += len(r["text"])
        t["tokens"] += n_tok
        manifest_files.append({"path": r["path"], "split": r["split"], "chars": len(r["text"]), "tokens": n_tok,
                               "sha256": hashlib.sha256(r["text"].encode()).hexdigest()})
    with gzip.open(args.out / "corpus.jsonl.gz", "wt", encoding="utf-8", compresslevel=9) as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    manifest = {
        "source": f"CPython {sys.version.split()[0]} standard library ({root})",
        "license": "PSF-2.0 (Python Software Foundation License Version 2)",
        "seed": args.seed,
        "splits": dict(SPLITS),
        "split_rule": "sha256(f'{seed}:{path}') by file; never by line",
        "tokenizer": {"vocab_size": tok.get_vocab_size(), "trained_on": "train split only"},
        "totals": totals,
        "files": manifest_files,
    }
    (args.out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    for s, t in totals.items():
        print(f"  {s:5s} {t['files']:5d} files {t['chars'] / 1e6:7.2f} M chars {t['tokens'] / 1e6:6.2f} M tokens")


if __name__ == "__main__":
    main()
