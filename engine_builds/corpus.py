"""The multi-language training corpus: pinned, permissively licensed sources -> filtered, de-duplicated
text split by project -> a retrained tokenizer -> token shards -> a compact pack for an offline GPU box.

    python -m engine_builds.corpus pin        # fill url/sha256 of new entries in corpus_sources.json
    python -m engine_builds.corpus fetch      # download every pinned archive (resumable, sha256-checked)
    python -m engine_builds.corpus extract    # per source: license check + per-file filters (cached)
    python -m engine_builds.corpus build      # dedup, hold-outs and their near-copies, project caps -> text/ + manifest.json
    python -m engine_builds.corpus tokenizer  # retrain the BPE (8192 and 16384), measure, keep one
    python -m engine_builds.corpus shards     # tokens/{split}-{lang}.u16/.idx/.docs.jsonl
    python -m engine_builds.corpus all        # fetch, extract, build, tokenizer, shards
    python -m engine_builds.corpus pack --max-mib 44     # data/gpu_pack/ (xz text + tokenizer + manifest)
    python -m engine_builds.corpus unpack --pack data/gpu_pack --out data/corpus   # on the GPU machine
    python -m engine_builds.corpus report     # markdown tables (ROOT/report.md) for CORPUS.md

Options shared by the steps: --root data/corpus, --sources a,b,c (only these sources: for trying the
pipeline end to end on a subset), --limit N (at most N files per source).

The pinned list is engine_builds/corpus_sources.json: one entry per project with kind (stdlib, pypi,
npm, deb, debsrc), exact version, declared license, the archive URL(s) and sha256(s), and for held-out
projects their split. Splits are by project, never by line:
    train / val   training projects; val is 1% of their files by a seeded hash (training-time evaluation)
    e2            the CPython standard library's test split, exactly as prepare_data.py makes it
    e3            the pinned out-of-distribution Python projects of prepare_ood.py
    e4            a few pinned projects per non-Python language, never trained on
Everything is deterministic from the pinned archives and the seed. Network use is development-time
only (this builder), never at product run time. See engine_builds/CORPUS.md for the numbers.
"""

from __future__ import annotations

import argparse
import collections
import fnmatch
import gzip
import json
import re
import sys
import tarfile
import time
from pathlib import Path

from engine_builds import corpus_fetch as fetchmod
from engine_builds import corpus_filters as flt
from engine_builds import corpus_license as lic
from engine_builds import corpus_nearcopy as nearcopy
from engine_builds.corpus_archive import iter_archive

SOURCES_FILE = Path(__file__).with_name("corpus_sources.json")
HELDOUT = ("e2", "e3", "e4")
SPLITS = ("train", "val", "e2", "e3", "e4")
EXTRACT_VERSION = 5  # bump when per-file filters change: cached extractions are redone
PROJECT_SHARE = 0.12  # the most one project may hold of a language's training text


# ---- the pinned source list -------------------------------------------------------------------------

def load_sources(path: Path = SOURCES_FILE) -> dict:
    return json.loads(path.read_text())


def select(sources: list[dict], names: str | None) -> list[dict]:
    if not names:
        return sources
    wanted = set(names.split(","))
    missing = wanted - {s["name"] for s in sources}
    if missing:
        raise SystemExit(f"unknown sources: {sorted(missing)}")
    return [s for s in sources if s["name"] in wanted]


def cache_path(cache: Path, src: dict, f: dict) -> Path:
    return cache / src["kind"] / f["file"]


def cmd_pin(args, cfg: dict) -> None:
    """Resolve url and sha256 for entries that have none yet and write them back (development time)."""
    changed = 0
    for src in select(cfg["sources"], args.sources):
        if src["kind"] == "stdlib" or src.get("files"):
            continue
        kind, name, ver = src["kind"], src.get("package", src["name"]), src["version"]
        try:
            if kind == "pypi":
                src["files"] = fetchmod.resolve_pypi(name, ver, src.get("prefer", "sdist"))
            elif kind == "npm":
                src["files"], registry_license = fetchmod.resolve_npm(name, ver, args.cache)
                src.setdefault("registry_license", registry_license)
            elif kind == "deb":
                src["files"] = fetchmod.resolve_deb(name, ver)
            elif kind == "debsrc":
                src["files"] = fetchmod.resolve_debsrc(name, ver, args.cache)
        except Exception as e:  # noqa: BLE001 - report and go on with the others
            print(f"pin {kind} {name} {ver}: {e}", file=sys.stderr)
            continue
        changed += 1
        print(f"pinned {kind} {name} {ver}: {[f['file'] for f in src['files']]}")
    if changed:
        SOURCES_FILE.write_text(json.dumps(cfg, indent=1) + "\n")
    print(f"{changed} entries pinned")


def cmd_fetch(args, cfg: dict) -> None:
    todo = [(s, f) for s in select(cfg["sources"], args.sources) for f in s.get("files", [])]
    for i, (src, f) in enumerate(todo, 1):
        dest = cache_path(args.cache, src, f)
        if dest.exists() and not args.verify:
            continue  # sha256 is checked again on extraction
        print(f"[{i}/{len(todo)}] {src['kind']} {src['name']} {src['version']}", file=sys.stderr)
        try:
            fetchmod.download(f["url"], dest, f["sha256"], f"{src['name']}")
        except (OSError, ValueError) as e:
            print(f"  FAILED: {e}", file=sys.stderr)
    missing = [f["file"] for s, f in todo if not cache_path(args.cache, s, f).exists()]
    for s in select(cfg["sources"], args.sources):
        if s["kind"] != "stdlib" and not s.get("files"):
            missing.append(f"{s['name']} (not pinned: run `pin`)")
    print(f"{len(todo) - len(missing)} archives present, {len(missing)} missing {missing[:10]}")


# ---- extraction: license check and per-file filters, cached per source ------------------------------

def _wanted(name: str) -> bool:
    """Read only what extraction looks at: code files, license files and package metadata."""
    base = name.rsplit("/", 1)[-1]
    return (flt.language_of(name) is not None or lic.is_license_file(name) or name.endswith("/copyright")
            or base in ("PKG-INFO", "METADATA", "package.json", "Cargo.toml", "pom.xml") or base.endswith(".rockspec"))


def _members(src: dict, cache: Path, max_bytes: int):
    """(path relative to the project root, bytes or None, role) for every file of a source's archives;
    role is 'code' or 'debian' (the packaging metadata of a Debian source package)."""
    root = src.get("root", "")
    for f in src["files"]:
        path = cache_path(cache, src, f)
        if src["kind"] == "debsrc" and ".debian.tar" in f["file"] and not path.exists():
            # Some mirrors lack a package's packaging tarball; the license is then confirmed from the
            # upstream tarball's own files (LICENSE, Cargo.toml, pom.xml...) alone.
            continue
        if not path.exists():
            raise FileNotFoundError(f"{path}: not downloaded (run fetch)")
        if fetchmod.sha256_file(path) != f["sha256"]:
            raise ValueError(f"{path}: sha256 does not match the pin")
        name = f["file"]
        if src["kind"] == "debsrc":
            if ".debian.tar" in name:
                for p, blob in iter_archive(path, max_bytes, _wanted):
                    yield p, blob, "debian"
                continue
            if not re.search(r"\.tar\.(gz|xz|bz2|lzma)$", name):  # signatures (.asc), .diff.gz
                continue
        elif src["kind"] == "deb":
            for p, blob in iter_archive(path, max_bytes, _wanted):
                if p.startswith("usr/share/doc/") and p.endswith("/copyright"):
                    yield p, blob, "debian"
                elif p.startswith(root):
                    yield p[len(root):], blob, "code"
            continue
        wheel = name.endswith(".whl")
        for p, blob in iter_archive(path, max_bytes, _wanted):
            rel = p if wheel else (p.split("/", 1)[1] if "/" in p else p)
            if src["kind"] == "debsrc" and rel.startswith("debian/"):  # native packages carry debian/ inline
                yield rel, blob, "debian"
            else:
                yield rel, blob, "code"


def _pkg_metadata_licenses(text: str) -> list[str]:
    out = []
    for key, val in re.findall(r"^(License|License-Expression|Classifier): (.+)$", text, flags=re.MULTILINE):
        if key == "Classifier":
            if val.startswith("License ::"):
                out.append(val.split("::")[-1].strip())
        else:
            out.append(val.strip())
    return out


def check_license(src: dict, texts: dict[str, str], metas: list[tuple[str, str]], dep5) -> dict:
    """Confirm the declared license from the archive's own files. Returns {"ok", "license", "how", ...}.

    The declared expression (pinned by us in corpus_sources.json) must have an accepted option, and
    every term of that option must be found in the evidence: a license text (LICENSE, COPYING...), the
    package metadata (PKG-INFO / METADATA / package.json) or the DEP-5 copyright file's main paragraph.
    A metadata field or a DEP-5 main license that names only refused licenses rejects the source."""
    declared = src["license"]
    evidence: dict[str, list[str]] = collections.defaultdict(list)
    refused_seen = []
    for name, text in texts.items():
        found, refused = lic.classify_text(text)
        for spdx in found:
            evidence[spdx].append(f"{name} text")
        if refused:
            refused_seen.append(f"{name}: mentions {'/'.join(sorted(refused))}")
    meta_refused = []
    for where, value in metas:
        got = lic.accepted(value)
        if got:
            for term in got.split(" AND "):
                evidence[term].append(f"{where} '{value[:60]}'")
        elif len(value) > 200:  # a whole license text pasted into the metadata field
            for spdx in lic.classify_text(value)[0]:
                evidence[spdx].append(f"{where} text")
        elif lic.refused_words(value):
            meta_refused.append(f"{where} says '{value[:80]}'")
    # Metadata naming only refused licenses rejects; a dual license lists both (jetty: Apache-2.0 and EPL).
    if meta_refused and not any(lic.accepted(v) for _, v in metas):
        return {"ok": False, "declared": declared, "why": meta_refused[0]}
    if dep5 is not None:
        main = dep5.main
        if main:
            got = lic.dep5_accepted(dep5, main)
            if got is None:
                return {"ok": False, "declared": declared, "why": f"DEP-5 'Files: *' license '{main}'"}
            for term in got.split(" AND "):
                evidence[term].append(f"DEP-5 Files: * License: {main}")
    for alt in lic.alternatives(declared):
        ids = [lic.normalize(t) for t in alt]
        if all(ids) and all(evidence.get(i) for i in ids):
            how = "; ".join(f"{i}: {', '.join(sorted(set(evidence[i]))[:3])}" for i in ids)
            return {"ok": True, "declared": declared, "license": " AND ".join(ids), "how": how,
                    "other_mentions": refused_seen[:5]}
    return {"ok": False, "declared": declared,
            "why": f"declared '{declared}' not confirmed; evidence {dict(evidence)}; {refused_seen[:3]}"}


def extract_source(src: dict, cache: Path, seed: int, limit: int | None = None) -> dict:
    """License verdict and the kept files of one source, with the reasons files were dropped."""
    dropped: collections.Counter = collections.Counter()
    files = []
    if src["kind"] == "stdlib":
        from engine_builds.prepare_data import collect, split_of, stdlib_root
        for rel, text in collect(stdlib_root())[:limit]:
            split = {"test": "e2"}.get(split_of(rel, seed), split_of(rel, seed))
            if split != "e2":  # the E2 files are kept exactly as prepare_data.py has them
                reason = flt.text_reason(text, "python") or lic.header_verdict(text)
                if reason:
                    dropped[reason.split(":")[0]] += 1
                    continue
            files.append({"path": rel, "lang": "python", "text": text, "license": src["license"], "split": split})
        verdict = {"ok": True, "declared": src["license"], "license": src["license"],
                   "how": f"the interpreter's own standard library ({stdlib_root()}), CPython LICENSE: PSF-2.0"}
        return {"meta": {"verdict": verdict, "dropped": dict(dropped)}, "files": files}

    minimal = src.get("filters") == "minimal"  # E3: every .py file, as prepare_ood.py has them
    texts: dict[str, str] = {}
    metas: list[tuple[str, str]] = []
    dep5 = None
    candidates = []
    for rel, blob, role in _members(src, cache, flt.MAX_BYTES if not minimal else 10 * flt.MAX_BYTES):
        if role == "debian":
            if rel.endswith("copyright") and blob:
                text = blob.decode("utf-8", "replace")
                texts["debian/copyright"] = text
                dep5 = lic.parse_dep5(text) or dep5
            continue
        depth = rel.count("/")
        if blob is not None and (depth == 0 or (depth == 1 and ".dist-info/" in rel)):
            base = rel.rsplit("/", 1)[-1]
            if lic.is_license_file(rel) and not flt.language_of(rel):
                texts[rel] = blob.decode("utf-8", "replace")
            elif base in ("PKG-INFO", "METADATA"):
                metas += [(rel, v) for v in _pkg_metadata_licenses(blob.decode("utf-8", "replace"))]
            elif base == "package.json":
                try:
                    value = json.loads(blob).get("license")
                except (ValueError, AttributeError):
                    value = None
                if isinstance(value, dict):
                    value = value.get("type")
                if value:
                    metas.append((rel, str(value)))
            elif base == "Cargo.toml" or base.endswith(".rockspec"):
                m = re.search(r'^\s*license\s*=\s*"([^"]+)"', blob.decode("utf-8", "replace"), flags=re.MULTILINE)
                if m:
                    metas.append((rel, m.group(1)))
            elif base == "pom.xml":
                block = re.search(r"<licenses>(.*?)</licenses>", blob.decode("utf-8", "replace"), flags=re.DOTALL)
                for name in re.findall(r"<name>([^<]+)</name>", block.group(1) if block else ""):
                    metas.append((rel, name.strip()))
        candidates.append((rel, blob))
    verdict = check_license(src, texts, metas, dep5)
    if not verdict["ok"]:
        return {"meta": {"verdict": verdict, "dropped": {}}, "files": []}

    langs = src.get("languages")
    h_lang = flt.header_language(rel for rel, _ in candidates)
    paths = [rel for rel, _ in candidates]
    # npm packages that ship TypeScript sources: their compiled .js/.d.ts are derived copies.
    has_ts_src = src["kind"] == "npm" and any(
        p.endswith((".ts", ".tsx")) and not p.endswith(".d.ts") and p.split("/")[0] not in flt.OUTPUT_DIRS
        for p in paths)
    excludes = src.get("exclude", [])
    includes = src.get("include")
    for rel, blob in candidates:
        lang = flt.language_of(rel)
        if lang is None:
            continue
        if lang == "c" and rel.lower().endswith(".h"):
            lang = h_lang
        if minimal:
            if lang != "python":
                continue
        elif langs and lang not in langs:
            continue
        if limit is not None and len(files) >= limit:
            break
        if includes and not any(fnmatch.fnmatchcase(rel, g) for g in includes):
            dropped["not-included"] += 1
            continue
        if any(fnmatch.fnmatchcase(rel, g) for g in excludes):
            dropped["excluded"] += 1
            continue
        if blob is None:
            dropped["too-large"] += 1
            continue
        text = flt.decode(blob)
        if text is None:
            dropped["not-utf8"] += 1
            continue
        if minimal:
            if not text.strip():
                continue
            files.append({"path": rel, "lang": lang, "text": text, "license": verdict["license"]})
            continue
        reason = flt.path_reason(rel)
        if reason is None and has_ts_src and rel.split("/")[0] in flt.OUTPUT_DIRS:
            reason = "build-output"
        reason = reason or flt.text_reason(text, lang) or lic.header_verdict(text)
        file_license = verdict["license"]
        if reason is None and dep5 is not None:
            per_file = dep5.license_of(rel)
            if per_file is not None:
                file_license = lic.dep5_accepted(dep5, per_file)
                if file_license is None:
                    reason = "license-dep5"
        if reason:
            dropped[reason.split(":")[0]] += 1
            continue
        files.append({"path": rel, "lang": lang, "text": text, "license": file_license})
    return {"meta": {"verdict": verdict, "dropped": dict(dropped)}, "files": files}


def extracted_path(root: Path, src: dict) -> Path:
    return root / "extracted" / f"{src['name']}-{src['version']}.jsonl.gz"


def _pin_key(src: dict) -> str:
    return json.dumps([EXTRACT_VERSION, src.get("license"), src.get("filters"), src.get("languages"),
                       src.get("exclude"), src.get("include"), src.get("root"),
                       [f["sha256"] for f in src.get("files", [])]])


def load_extracted(root: Path, src: dict) -> dict | None:
    path = extracted_path(root, src)
    if not path.exists():
        return None
    with gzip.open(path, "rt", encoding="utf-8") as f:
        meta = json.loads(f.readline())
        if meta.get("pin_key") != _pin_key(src):
            return None
        files = [json.loads(line) for line in f]
    return {"meta": meta, "files": files}


def cmd_extract(args, cfg: dict) -> None:
    sources = select(cfg["sources"], args.sources)
    bar = fetchmod.Progress("extract", len(sources), " sources")
    for src in sources:
        if src["kind"] != "stdlib" and not src.get("files"):
            print(f"  {src['name']}: not pinned, skipped", file=sys.stderr)
            bar.update(1)
            continue
        if not args.force and args.limit is None and load_extracted(args.root, src) is not None:
            bar.update(1, src["name"])
            continue
        t0 = time.time()
        try:
            res = extract_source(src, args.cache, cfg["seed"], args.limit)
        except (OSError, ValueError, EOFError, tarfile.TarError) as e:
            print(f"\n  {src['name']}: {e}", file=sys.stderr)
            bar.update(1)
            continue
        res["meta"]["pin_key"] = _pin_key(src)
        path = extracted_path(args.root, src)
        path.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(path, "wt", encoding="utf-8", compresslevel=1) as f:
            f.write(json.dumps(res["meta"]) + "\n")
            for r in res["files"]:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        v = res["meta"]["verdict"]
        status = f"{v.get('license')}" if v["ok"] else f"REJECTED ({v['why'][:120]})"
        langs = collections.Counter(r["lang"] for r in res["files"])
        print(f"\n  {src['name']} {src['version']}: {status}; kept {dict(langs)}; dropped "
              f"{res['meta']['dropped']} ({time.time() - t0:.0f}s)", file=sys.stderr)
        bar.update(1, src["name"])
    bar.close()


# ---- build: hold-outs, dedup, caps -> text/{split}-{lang}.jsonl and manifest.json ------------------

def assign_split(src: dict, rec: dict, seed: int) -> str:
    if src.get("split") in HELDOUT:
        return src["split"]
    if "split" in rec:  # the standard library carries prepare_data.py's own split
        return rec["split"]
    return flt.training_split(seed, src["name"], rec["path"])


def select_corpus(entries: list[tuple[dict, dict]], seed: int, share: float = PROJECT_SHARE):
    """Dedup, hold-out protection and per-project caps over (source, record) pairs in source order.

    Returns (kept records with 'split', 'project', 'version', 'sha256' added; dropped counts per source).
    Held-out records are registered first, so a training copy of a held-out file is the one dropped."""
    dropped: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    protected_exact, protected_near = set(), set()
    kept = []
    for src, rec in entries:
        rec["split"] = assign_split(src, rec, seed)
        rec["project"], rec["version"] = src["name"], src["version"]
        rec["sha256"] = flt.content_hash(rec["text"])
        rec["near"] = flt.near_hash(rec["text"])
    seen_exact, seen_near = set(), set()
    for src, rec in entries:
        if rec["split"] in HELDOUT:
            if rec["split"] == "e4" and (rec["sha256"] in seen_exact or rec["near"] in seen_near):
                dropped[src["name"]]["duplicate"] += 1
                continue
            seen_exact.add(rec["sha256"])
            seen_near.add(rec["near"])
            protected_exact.add(rec["sha256"])
            protected_near.add(rec["near"])
            kept.append(rec)
    seen_exact, seen_near = set(), set()
    for src, rec in entries:
        if rec["split"] in HELDOUT:
            continue
        if rec["sha256"] in protected_exact or rec["near"] in protected_near:
            dropped[src["name"]]["dup-heldout"] += 1
            continue
        if rec["sha256"] in seen_exact or rec["near"] in seen_near:
            dropped[src["name"]]["duplicate"] += 1
            continue
        seen_exact.add(rec["sha256"])
        seen_near.add(rec["near"])
        kept.append(rec)
    kept = _drop_near_copies(kept, dropped)
    # Per-project cap on each language's training text.
    by_lang: dict[str, dict[str, int]] = collections.defaultdict(lambda: collections.defaultdict(int))
    for rec in kept:
        if rec["split"] == "train":
            by_lang[rec["lang"]][rec["project"]] += len(rec["text"])
    limits = {lang: flt.cap_sizes(dict(sizes), share) for lang, sizes in by_lang.items()}
    over = {(lang, p) for lang, lim in limits.items() for p, c in lim.items() if c < by_lang[lang][p]}
    if over:
        order = sorted((r for r in kept if r["split"] == "train" and (r["lang"], r["project"]) in over),
                       key=lambda r: flt.unit_hash(seed, f"cap:{r['project']}/{r['path']}"))
        used: dict[tuple[str, str], int] = collections.defaultdict(int)
        cut = set()
        for r in order:
            key = (r["lang"], r["project"])
            if used[key] + len(r["text"]) > limits[r["lang"]][r["project"]]:
                cut.add(id(r))
                dropped[r["project"]]["project-cap"] += 1
            else:
                used[key] += len(r["text"])
        kept = [r for r in kept if id(r) not in cut]
    return kept, dropped


def _drop_near_copies(kept: list[dict], dropped: dict) -> list[dict]:
    """Training files that near-copy a held-out file of another project (another version of it, a
    fork: corpus_nearcopy) are dropped, one language at a time; the hashes above catch only copies
    identical up to whitespace."""
    def as_docs(recs: list[dict]) -> list[nearcopy.Doc]:
        return [nearcopy.Doc(r["project"], r["path"], r["text"]) for r in recs]

    cut = set()
    for lang in sorted({r["lang"] for r in kept}):
        training = [r for r in kept if r["lang"] == lang and r["split"] not in HELDOUT]
        heldout = [r for r in kept if r["lang"] == lang and r["split"] in HELDOUT]
        for i in nearcopy.near_copies(as_docs(training), as_docs(heldout)):
            cut.add(id(training[i]))
            dropped[training[i]["project"]]["near-heldout"] += 1
    return [r for r in kept if id(r) not in cut]


def package_of(rec: dict) -> str:
    parent = rec["path"].rsplit("/", 1)[0] if "/" in rec["path"] else ""
    return f"{rec['project']}/{parent}" if parent else rec["project"]


def totals_of(files: list[dict]) -> dict:
    def add(d, r):
        d["files"] += 1
        d["chars"] += r["chars"]
        d["tokens"] += r.get("tokens") or 0

    blank = lambda: {"files": 0, "chars": 0, "tokens": 0}
    by_split, by_lang, by_source = (collections.defaultdict(blank) for _ in range(3))
    by_split_lang: dict = collections.defaultdict(lambda: collections.defaultdict(blank))
    for r in files:
        add(by_split[r["split"]], r)
        add(by_lang[r["language"]], r)
        add(by_source[r["project"]], r)
        add(by_split_lang[r["split"]][r["language"]], r)
    return {"by_split": dict(by_split), "by_language": dict(by_lang), "by_split_language":
            {s: dict(v) for s, v in by_split_lang.items()}, "by_source": dict(by_source)}


def cmd_build(args, cfg: dict) -> None:
    sources = select(cfg["sources"], args.sources)
    entries, metas = [], {}
    held = [s for s in sources if s.get("split") in HELDOUT]
    train_names = {s["name"] for s in sources if s.get("split") not in HELDOUT}
    clash = train_names & {s["name"] for s in held}
    if clash:
        raise SystemExit(f"projects both held out and trained on: {clash}")
    for src in sources:
        ex = load_extracted(args.root, src)
        if ex is None:
            print(f"  {src['name']}: not extracted (run extract), skipped", file=sys.stderr)
            continue
        metas[src["name"]] = ex["meta"]
        for rec in ex["files"][:args.limit]:
            entries.append((src, rec))
    print(f"{len(entries)} candidate files from {len(metas)} sources", file=sys.stderr)
    kept, dropped = select_corpus(entries, cfg["seed"])
    text_dir = args.root / "text"
    text_dir.mkdir(parents=True, exist_ok=True)
    for old in text_dir.glob("*.jsonl"):
        old.unlink()
    handles = {}
    manifest_files = []
    for rec in kept:
        key = (rec["split"], rec["lang"])
        if key not in handles:
            handles[key] = open(text_dir / f"{key[0]}-{key[1]}.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        doc = {"path": rec["path"], "project": rec["project"], "version": rec["version"],
               "package": package_of(rec), "license": rec["license"], "sha256": rec["sha256"], "text": rec["text"]}
        handles[key].write(json.dumps(doc, ensure_ascii=False) + "\n")
        manifest_files.append({"path": f"{rec['project']}/{rec['path']}", "project": rec["project"],
                               "version": rec["version"], "language": rec["lang"], "split": rec["split"],
                               "license": rec["license"], "sha256": rec["sha256"], "chars": len(rec["text"]),
                               "tokens": None})
    for h in handles.values():
        h.close()
    source_info = []
    for src in sources:
        meta = metas.get(src["name"])
        if meta is None:
            continue
        drops = collections.Counter(meta.get("dropped", {}))
        drops.update(dropped.get(src["name"], {}))
        source_info.append({
            "name": src["name"], "kind": src["kind"], "version": src["version"],
            "split": src.get("split", "train/val" if src["kind"] != "stdlib" else "train/val/e2"),
            "license": meta["verdict"].get("license"), "declared_license": src["license"],
            "license_ok": meta["verdict"]["ok"],
            "license_how": meta["verdict"].get("how") or meta["verdict"].get("why"),
            "archives": src.get("files", []), "dropped": dict(drops)})
    manifest = {
        "seed": cfg["seed"], "splits": list(SPLITS), "project_share_cap": PROJECT_SHARE,
        "val_share": flt.VAL_SHARE, "max_file_bytes": flt.MAX_BYTES,
        "split_rule": "by project (e3/e4 whole projects; e2 = prepare_data.py test split); val = 1% of training "
                      "projects' files by sha256(seed:val:project/path)",
        "sources": source_info, "files": manifest_files, "totals": totals_of(manifest_files), "tokenizer": None}
    write_manifest(args.root, manifest)
    print_totals(manifest["totals"])


def write_manifest(root: Path, manifest: dict) -> None:
    tmp = root / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=0) + "\n")
    tmp.replace(root / "manifest.json")


def print_totals(totals: dict) -> None:
    print(f"{'split':6s} {'language':11s} {'files':>8s} {'M chars':>9s} {'M tokens':>9s}")
    for split, langs in sorted(totals["by_split_language"].items(), key=lambda kv: SPLITS.index(kv[0])):
        for lang, t in sorted(langs.items()):
            print(f"{split:6s} {lang:11s} {t['files']:8d} {t['chars'] / 1e6:9.2f} {t['tokens'] / 1e6:9.2f}")


# ---- tokenizer and shards -------------------------------------------------------------------------

def cmd_tokenizer(args, cfg: dict) -> None:
    from engine_builds.corpus_tokenizer import train_and_measure
    from engine_builds.train_tokenizer import save
    sizes = [int(v) for v in args.vocab_sizes.split(",")]
    t0 = time.time()
    toks, report = train_and_measure(args.root / "text", sizes, args.tokenizer_chars, cfg["seed"])
    report["seconds"] = round(time.time() - t0, 1)
    report["chosen"] = args.vocab_size
    for v, tok in toks.items():
        save(tok, args.root / ("tokenizer" if v == args.vocab_size else f"tokenizer-{v}"), 2048)
    (args.root / "tokenizer_report.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report["chars_per_token"], indent=1))


def _encode_into(tok, docs, w, counts: dict, bar) -> None:
    """Encode documents into a shard writer (corpus_shards.encode_docs: sentinel spellings are text),
    recording each file's token count."""
    from engine_builds.corpus_shards import encode_docs

    for d, ids in encode_docs(tok, docs):
        w.add(ids, d)
        counts[f"{d['project']}/{d['path']}"] = len(ids)
        bar.update(len(d["text"]))


def cmd_shards(args, cfg: dict) -> None:
    from tokenizers import Tokenizer

    from engine_builds.corpus_shards import ShardWriter
    from engine_builds.corpus_tokenizer import read_docs
    tok = Tokenizer.from_file(str(args.root / "tokenizer" / "tokenizer.json"))
    manifest = json.loads((args.root / "manifest.json").read_text())
    counts = {}
    out = args.root / "tokens"
    out.mkdir(parents=True, exist_ok=True)
    files = sorted((args.root / "text").glob("*.jsonl"))
    total_chars = sum(f["chars"] for f in manifest["files"])
    bar = fetchmod.Progress("tokenize", total_chars, " chars")
    for path in files:
        split, lang = path.stem.split("-", 1)
        w = ShardWriter(out, split, lang)
        _encode_into(tok, read_docs(path), w, counts, bar)
        w.close()
    bar.close()
    for f in manifest["files"]:
        f["tokens"] = counts.get(f["path"])
    manifest["totals"] = totals_of(manifest["files"])
    report_path = args.root / "tokenizer_report.json"
    manifest["tokenizer"] = {"vocab_size": tok.get_vocab_size(), "dir": "tokenizer",
                             "report": json.loads(report_path.read_text()) if report_path.exists() else None}
    write_manifest(args.root, manifest)
    print_totals(manifest["totals"])


def cmd_report(args, cfg: dict) -> None:
    """Markdown tables from manifest.json (and tokenizer_report.json) for CORPUS.md."""
    m = json.loads((args.root / "manifest.json").read_text())
    t = m["totals"]
    out = ["### Tokens per split and language (millions; files in brackets)", "",
           "| language | " + " | ".join(SPLITS) + " |", "|---|" + "---:|" * len(SPLITS)]
    langs = sorted({lang for s in t["by_split_language"].values() for lang in s})
    for lang in langs + ["all"]:
        cells = []
        for split in SPLITS:
            if lang == "all":
                c = t["by_split"].get(split)
            else:
                c = t["by_split_language"].get(split, {}).get(lang)
            cells.append(f"{c['tokens'] / 1e6:.2f} ({c['files']:,})" if c else "-")
        out.append(f"| {lang} | " + " | ".join(cells) + " |")
    train = t["by_split"].get("train", {"tokens": 0})
    out += ["", "Training mix (share of train tokens): " + ", ".join(
        f"{lang} {t['by_split_language']['train'][lang]['tokens'] / max(train['tokens'], 1) * 100:.1f}%"
        for lang in langs if lang in t["by_split_language"].get("train", {}))]
    # sources per language: where each source's training tokens went
    per_src_lang: dict = collections.defaultdict(lambda: collections.Counter())
    for f in m["files"]:
        per_src_lang[f["project"]][f["language"]] += f["tokens"] or 0
    out += ["", "### Sources", "", ("| source | kind | version | split | license | how the license was confirmed "
                                    "| tokens by language (M) |"), "|---|---|---|---|---|---|---|"]
    for s in m["sources"]:
        toks = ", ".join(f"{lang} {n / 1e6:.2f}" for lang, n in per_src_lang[s["name"]].most_common())
        how = (s["license_how"] or "").replace("|", "/")[:160]
        out.append(f"| {s['name']} | {s['kind']} | {s['version']} | {s['split']} | "
                   f"{s['license'] if s['license_ok'] else 'REJECTED'} | {how} | {toks or '-'} |")
    drops: collections.Counter = collections.Counter()
    for s in m["sources"]:
        drops.update(s["dropped"])
    out += ["", "### Dropped files (all sources)", "", "| reason | files |", "|---|---:|"]
    out += [f"| {r} | {n:,} |" for r, n in drops.most_common()]
    rep = args.root / "tokenizer_report.json"
    if rep.exists():
        r = json.loads(rep.read_text())
        sizes = list(r["chars_per_token"])
        cols = sorted(r["chars_per_token"][sizes[0]])
        out += ["", "### Characters per token on held-out text", "", "| vocab | " + " | ".join(cols) + " |",
                "|---|" + "---:|" * len(cols)]
        for v in sizes:
            out.append(f"| {v} | " + " | ".join(f"{r['chars_per_token'][v][c]:.3f}" for c in cols) + " |")
    text = "\n".join(out) + "\n"
    (args.root / "report.md").write_text(text)
    print(text)


def cmd_all(args, cfg: dict) -> None:
    for step in (cmd_fetch, cmd_extract, cmd_build, cmd_tokenizer, cmd_shards):
        print(f"== {step.__name__[4:]}", file=sys.stderr)
        step(args, cfg)


def cmd_pack(args, cfg: dict) -> None:
    from engine_builds.corpus_pack import pack
    pack(args.root, args.out or Path("data/gpu_pack"), args.max_mib, cfg["seed"])


def cmd_unpack(args, cfg: dict) -> None:
    from engine_builds.corpus_pack import unpack
    unpack(args.pack, args.out or args.root)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=["pin", "fetch", "extract", "build", "tokenizer", "shards", "all", "pack", "report",
                                     "unpack"])
    ap.add_argument("--root", type=Path, default=Path("data/corpus"))
    ap.add_argument("--cache", type=Path, default=None, help="downloads (default ROOT/downloads)")
    ap.add_argument("--sources", default=None, help="comma-separated source names (default: all)")
    ap.add_argument("--limit", type=int, default=None, help="at most N files per source (quick trials)")
    ap.add_argument("--force", action="store_true", help="extract again even when cached")
    ap.add_argument("--verify", action="store_true", help="fetch: re-check sha256 of present archives")
    ap.add_argument("--vocab-size", type=int, default=8192, help="tokenizer kept as ROOT/tokenizer")
    ap.add_argument("--vocab-sizes", default="8192,16384", help="tokenizer: sizes trained and measured")
    ap.add_argument("--tokenizer-chars", type=int, default=12_000_000,
                    help="tokenizer: training characters per language (Python twice this)")
    ap.add_argument("--max-mib", type=float, default=44.0, help="pack: size budget")
    ap.add_argument("--pack", type=Path, default=Path("data/gpu_pack"), help="unpack: the pack directory")
    ap.add_argument("--out", type=Path, default=None, help="pack: output dir; unpack: corpus root to write")
    args = ap.parse_args(argv)
    args.cache = args.cache or args.root / "downloads"
    cfg = load_sources()
    globals()[f"cmd_{args.step}"](args, cfg)


if __name__ == "__main__":
    main()
