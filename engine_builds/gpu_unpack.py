"""corpus_pack.unpack with every core: the GPU pack back into token shards, in seconds.

    python -m engine_builds.gpu_unpack --pack data/gpu_pack --out runs/gpu/corpus [--workers N] [--limit-docs N]

Writes OUT/tokens/{split}-{lang}.u16/.idx/.docs.jsonl (corpus_shards.py's layout) and OUT/tokenizer/,
like `python -m engine_builds.corpus unpack`, but in two parallel phases: every (split, language)
file is decompressed by its own process and cut into chunks of about CHUNK_CHARS characters, then
the chunks are tokenised by a pool of single-threaded workers (tokenizers' encode_batch_fast, which
skips the offsets encode_batch computes: ~1.6x faster per core here). corpus_pack.unpack decompresses
and tokenises one file after the other with one process and rayon threads; its Python-side work
(ids lists, per-document numpy conversion) stays serial.

Sentinel strings inside a document ("<|endoftext|>" written in source code) are encoded as text, as
the serving tokenizer (completer.tokenizer) encodes them, never as sentinel ids. pack.json's token
counts treat them as sentinels, so the check against pack.json counts those documents both ways.

OUT/tokens/unpack.json records the pack it came from; a second run over the same pack returns at once.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import multiprocessing as mp
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np

from engine_builds.corpus_pack import SEP

CHUNK_CHARS = 2_000_000
_SENTINEL = re.compile(r"<\|(?:endoftext|fim_prefix|fim_middle|fim_suffix|fim_pad|file_sep|repo_name)\|>")
_tok = None


def _tokenizer(tok_path: str):
    global _tok
    if _tok is None:
        os.environ["RAYON_NUM_THREADS"] = "1"  # one process per core; read when rayon's pool starts
        from tokenizers import Tokenizer

        _tok = Tokenizer.from_file(tok_path)
    return _tok


def _split_file(job: tuple[str, str, str, str, int]) -> list[tuple[str, str, int, str, int]]:
    """Decompress one (split, language) file and write its documents as chunk files."""
    pack_dir, tmp, split, lang, limit = job
    data = lzma.decompress((Path(pack_dir) / "text" / f"{split}-{lang}.xz").read_bytes()).decode("utf-8")
    texts = data.split(SEP) if data else []
    if limit:
        texts = texts[:limit]
    chunks, start, size = [], 0, 0
    for i, t in enumerate(texts):
        size += len(t)
        if size >= CHUNK_CHARS or i == len(texts) - 1:
            chunks.append(texts[start:i + 1])
            start, size = i + 1, 0
    out = []
    for c, docs in enumerate(chunks):
        path = Path(tmp) / f"{split}-{lang}-{c:05d}.txt"
        path.write_bytes(SEP.join(docs).encode("utf-8"))  # bytes: text mode would turn \r\n into \n
        out.append((split, lang, c, str(path), len(docs)))
    return out or [(split, lang, 0, "", 0)]


def _tokenize_chunk(job: tuple[str, str, str, int, str, int]) -> tuple[str, str, int, bytes, bytes, int]:
    split, lang, c, path, n_docs, tok_path = job
    if not n_docs:
        return split, lang, c, b"", b"", 0
    tok = _tokenizer(tok_path)
    texts = Path(path).read_bytes().decode("utf-8").split(SEP)
    if len(texts) != n_docs:
        raise ValueError(f"{path}: {len(texts)} documents, expected {n_docs}")
    tok.encode_special_tokens = True  # sentinel strings in source code are text
    encs = tok.encode_batch_fast(texts, add_special_tokens=False)
    lengths = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
    ids = np.fromiter((i for e in encs for i in e.ids), dtype=np.int64, count=int(lengths.sum()))
    if ids.size and int(ids.max()) > 0xFFFF:
        raise ValueError("token id does not fit in uint16")
    # pack.json counts sentinel strings as one sentinel id each: count those documents its way too.
    delta = 0
    marked = [t for t in texts if "<|" in t and _SENTINEL.search(t)]
    if marked:
        tok.encode_special_tokens = False
        as_sentinels = sum(len(e.ids) for e in tok.encode_batch_fast(marked, add_special_tokens=False))
        tok.encode_special_tokens = True
        as_text = sum(len(e.ids) for e in tok.encode_batch_fast(marked, add_special_tokens=False))
        delta = as_sentinels - as_text
    return split, lang, c, ids.astype("<u2").tobytes(), lengths.tobytes(), delta


def pack_digest(pack_dir: Path) -> str:
    return hashlib.sha256((pack_dir / "pack.json").read_bytes()).hexdigest()[:16]


def unpack(pack_dir: Path, dest: Path, workers: int = 0, limit_docs: int = 0, check: bool = True,
           strict: bool = True) -> dict:
    """strict: a token count that differs from pack.json's is an error (else a warning, recorded)."""
    t0 = time.time()
    pack_dir, dest = Path(pack_dir), Path(dest)
    info = json.loads((pack_dir / "pack.json").read_text())
    out = dest / "tokens"
    marker = out / "unpack.json"
    digest = pack_digest(pack_dir)
    if marker.exists():
        done = json.loads(marker.read_text())
        if done.get("pack") == digest and done.get("limit_docs") == limit_docs:
            print(f"unpack: {out} already holds this pack ({done['total_tokens'] / 1e6:.1f} M tokens)")
            return done
    workers = workers or os.cpu_count() or 1
    shutil.copytree(pack_dir / "tokenizer", dest / "tokenizer", dirs_exist_ok=True)
    tok_path = str(dest / "tokenizer" / "tokenizer.json")
    out.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    tmp = dest / "unpack-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    keys = [(split, lang) for split, langs in info["contents"].items() for lang in langs]
    # Largest files first, so the long decompressions start at once.
    keys.sort(key=lambda k: -info["contents"][k[0]][k[1]].get("bytes", 0))
    ctx = mp.get_context("fork")
    got: dict = {}
    mismatches: list[str] = []
    with ctx.Pool(workers) as pool:
        chunk_lists = pool.map(_split_file, [(str(pack_dir), str(tmp), s, lang, limit_docs) for s, lang in keys],
                               chunksize=1)
        t1 = time.time()
        jobs = [(*c, tok_path) for chunks in chunk_lists for c in chunks]
        jobs.sort(key=lambda j: -j[4])  # big chunks first
        results: dict[tuple[str, str], dict[int, tuple]] = {}
        for split, lang, c, ids, lengths, delta in pool.imap_unordered(_tokenize_chunk, jobs, chunksize=1):
            results.setdefault((split, lang), {})[c] = (ids, lengths, delta)
    t2 = time.time()
    for split, lang in sorted(keys):
        docs = [json.loads(line) for line in lzma.decompress(
            (pack_dir / "text" / f"{split}-{lang}.docs.xz").read_bytes()).decode("utf-8").splitlines()]
        parts = results[(split, lang)]
        lengths = np.concatenate([np.frombuffer(parts[c][1], dtype=np.int64) for c in sorted(parts)])
        if limit_docs:
            docs = docs[:limit_docs]
        if len(docs) != len(lengths):
            raise ValueError(f"{split}-{lang}: {len(lengths)} texts but {len(docs)} documents")
        stem = out / f"{split}-{lang}"
        with open(stem.with_suffix(".u16"), "wb") as f:
            for c in sorted(parts):
                f.write(parts[c][0])
        np.concatenate(([0], np.cumsum(lengths))).astype("<u8").tofile(stem.with_suffix(".idx"))
        with open(str(stem) + ".docs.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps({k: d.get(k) for k in ("path", "project", "package")}, ensure_ascii=False) + "\n"
                         for d in docs)
        n = int(lengths.sum())
        delta = sum(p[2] for p in parts.values())
        got.setdefault(split, {})[lang] = n
        expected = info["contents"][split][lang]["tokens"]
        if check and not limit_docs and n + delta != expected:
            message = (f"{split}-{lang}: {n} tokens ({delta:+d} counting sentinel strings as sentinels), "
                       f"the pack says {expected}")
            if strict:
                raise ValueError(message)
            mismatches.append(message)
            print(f"WARNING: {message}", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)
    total = sum(v for langs in got.values() for v in langs.values())
    done = {"pack": digest, "limit_docs": limit_docs, "tokens": got, "total_tokens": total, "workers": workers,
            "count_mismatches": mismatches,
            "seconds": round(time.time() - t0, 1), "seconds_decompress": round(t1 - t0, 1),
            "seconds_tokenize": round(t2 - t1, 1), "seconds_write": round(time.time() - t2, 1)}
    marker.write_text(json.dumps(done, indent=1) + "\n")
    print(f"unpack: {total / 1e6:.1f} M tokens into {out} in {done['seconds']}s with {workers} processes "
          f"(decompress {done['seconds_decompress']}s, tokenize {done['seconds_tokenize']}s, "
          f"write {done['seconds_write']}s)", flush=True)
    return done


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pack", type=Path, default=Path("data/gpu_pack"))
    ap.add_argument("--out", type=Path, required=True, help="corpus root: tokens/ and tokenizer/ go here")
    ap.add_argument("--workers", type=int, default=0, help="processes (default: every core)")
    ap.add_argument("--limit-docs", type=int, default=0, help="only the first N documents of each file (dry runs)")
    ap.add_argument("--lenient", action="store_true",
                    help="token counts that differ from pack.json's are warnings (e.g. another tokenizers version)")
    args = ap.parse_args()
    if not (args.pack / "pack.json").exists():
        raise SystemExit(f"{args.pack}/pack.json not found: build it with `python -m engine_builds.corpus pack`")
    unpack(args.pack, args.out, args.workers, args.limit_docs, strict=not args.lenient)


if __name__ == "__main__":
    main()
