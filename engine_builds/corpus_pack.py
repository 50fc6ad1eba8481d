"""A compact, offline copy of the corpus for a GPU machine with no network and a small transfer
budget, and the step that turns it back into token shards there.

    pack:   ROOT (text/, tokenizer/, manifest.json) -> OUT/
              pack.json                      what is inside: per split and language, documents, characters and
                                             tokens (with the packed tokenizer); sampling rule; corpus totals
              tokenizer/                     the tokenizer the shards are made with
              text/{split}-{lang}.xz         the documents' text joined by NUL bytes, xz (one or more streams)
              text/{split}-{lang}.docs.xz    one JSON line per document: path, project, package, version,
                                             license, sha256 (the manifest of what is packed)
    unpack: OUT/ -> DEST/tokens/{split}-{lang}.u16/.idx/.docs.jsonl (the layout of corpus_shards.py),
            tokenizing with every core (tokenizers' encode_batch), and checks the token counts.

Text, not token ids, is packed. pack.json records both for a 2 M-character sample per language: xz of
uint16 ids came out 3-8% smaller per token than xz of the text (on the 2026-12 corpus), but text keeps
the pack independent of the tokenizer (the GPU machine can re-tokenize with another vocabulary, e.g.
the 16,384 one) and full 24 M-character streams compress text further (Python: 0.64 bytes per token
on the sample, 0.50 in the pack). Tokenizing it again takes minutes on a many-core machine.

All of val, E2, E3 and E4 are packed. Training documents are then added package by package (whole
directories, so sibling files stay together for repo-level context) in a seeded hash order, each
language getting a share of the remaining budget proportional to its share of the full training mix
(in tokens), so the pack keeps the corpus' language balance. Text goes in as xz streams of at most
CHUNK characters; the last stream of a language is sized to its remaining budget from the ratio of the
streams before it.
"""

from __future__ import annotations

import collections
import json
import lzma
import os
import shutil
import time
from pathlib import Path

from engine_builds.corpus_filters import unit_hash
from engine_builds.corpus_tokenizer import read_docs

SEP = "\x00"  # never inside a document: the filters drop files with NUL bytes
CHUNK = 24_000_000  # characters per xz stream (preset 9 has a 64 MiB dictionary)
XZ = {"preset": 9}
DOC_FIELDS = ("path", "project", "package", "version", "license", "sha256")


def _xz(data: bytes) -> bytes:
    return lzma.compress(data, format=lzma.FORMAT_XZ, **XZ)


def _split_lang(path: Path) -> tuple[str, str]:
    split, lang = path.name.split(".", 1)[0].split("-", 1)
    return split, lang


def _tokens(tok, docs: list[dict], known: dict[str, int]) -> int:
    """Tokens of documents: the manifest's counts (from the shards step, same tokenizer) where present,
    else encoded here. unpack re-encodes everything and checks these numbers."""
    n, missing = 0, []
    for d in docs:
        c = known.get(f"{d['project']}/{d['path']}")
        if c is None:
            missing.append(d["text"])
        else:
            n += c
    return n + sum(len(e.ids) for e in tok.encode_batch(missing))


def measure_text_vs_ids(tok, texts: list[str]) -> dict:
    """xz bytes per token for the same documents stored as text and as uint16 ids."""
    import numpy as np
    ids = [i for e in tok.encode_batch(texts) for i in e.ids]
    text_bytes = len(_xz(SEP.join(texts).encode("utf-8")))
    chars = sum(map(len, texts))
    id_bytes = len(_xz(np.asarray(ids, dtype="<u2").tobytes()))
    return {"tokens": len(ids), "xz_text_bytes_per_token": round(text_bytes / max(len(ids), 1), 4),
            "xz_u16_bytes_per_token": round(id_bytes / max(len(ids), 1), 4),
            "xz_text_bytes_per_char": round(text_bytes / max(chars, 1), 5)}


class _Stream:
    """Writes one text/{split}-{lang} pair: documents as NUL-joined xz streams plus their table."""

    def __init__(self, out: Path, split: str, lang: str):
        self.text = open(out / "text" / f"{split}-{lang}.xz", "wb")  # noqa: SIM115 - closed in close()
        self.docs: list[dict] = []
        self.pending: list[str] = []
        self.pending_chars = 0
        self.bytes = 0
        self.chars = 0
        self.stream_chars = 0  # characters in streams already written

    def add(self, doc: dict) -> None:
        self.docs.append({k: doc.get(k) for k in DOC_FIELDS})
        self.pending.append(doc["text"])
        self.pending_chars += len(doc["text"])
        self.chars += len(doc["text"])

    def flush(self) -> None:
        if not self.pending:
            return
        # Streams are separated like documents: each starts after a NUL, except the first.
        data = (SEP if self.stream_chars else "") + SEP.join(self.pending)
        blob = _xz(data.encode("utf-8"))
        self.text.write(blob)
        self.bytes += len(blob)
        self.stream_chars += self.pending_chars
        self.pending, self.pending_chars = [], 0

    def close(self, out: Path, split: str, lang: str) -> None:
        self.flush()
        self.text.close()
        table = "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in self.docs)
        blob = _xz(table.encode("utf-8"))
        (out / "text" / f"{split}-{lang}.docs.xz").write_bytes(blob)
        self.bytes += len(blob)


def _packages_in_order(docs: list[dict], seed: int) -> list[list[dict]]:
    groups: dict[str, list[dict]] = collections.defaultdict(list)
    for d in docs:
        groups[d["package"]].append(d)
    order = sorted(groups, key=lambda p: unit_hash(seed, f"pack:{p}"))
    return [groups[p] for p in order]


def pack(root: Path, out: Path, max_mib: float, seed: int) -> dict:
    from tokenizers import Tokenizer
    t0 = time.time()
    budget = int(max_mib * 1024 * 1024)
    tok = Tokenizer.from_file(str(root / "tokenizer" / "tokenizer.json"))
    manifest = json.loads((root / "manifest.json").read_text())
    known = {f["path"]: f["tokens"] for f in manifest["files"] if f.get("tokens") is not None}
    if out.exists():
        shutil.rmtree(out)
    (out / "text").mkdir(parents=True)
    shutil.copytree(root / "tokenizer", out / "tokenizer")
    used = sum(f.stat().st_size for f in (out / "tokenizer").iterdir())
    contents: dict = collections.defaultdict(dict)

    # 1. Evaluation splits, whole.
    text_files = sorted((root / "text").glob("*.jsonl"))
    for path in text_files:
        split, lang = _split_lang(path)
        if split == "train":
            continue
        docs = list(read_docs(path))
        s = _Stream(out, split, lang)
        for d in docs:
            s.add(d)
            if s.pending_chars >= CHUNK:
                s.flush()
        s.close(out, split, lang)
        used += s.bytes
        contents[split][lang] = {"docs": len(docs), "chars": s.chars, "tokens": _tokens(tok, docs, known),
                                 "bytes": s.bytes}
        print(f"pack {split}-{lang}: {len(docs)} docs, {s.bytes / 2**20:.2f} MiB", flush=True)

    # 2. Training text: each language's byte budget from its token share of the full training mix.
    train_tokens = {lang: t["tokens"] or t["chars"] / 3.5
                    for lang, t in manifest["totals"]["by_split_language"].get("train", {}).items()}
    # pack.json repeats the corpus totals and source list: reserve its size (plus slack) up front.
    reserve = len(json.dumps({"t": manifest["totals"], "s": manifest["sources"]}, indent=1)) + 8192
    left = budget - used - reserve
    if left <= 0:
        raise SystemExit(f"the evaluation splits alone take {used / 2**20:.1f} MiB of {max_mib} MiB")
    samples, ratio, measure = {}, {}, {}
    for lang in train_tokens:
        docs = list(read_docs(root / "text" / f"train-{lang}.jsonl"))
        samples[lang] = docs
        probe = [d["text"] for d in sorted(docs, key=lambda d: unit_hash(seed, f"probe:{d['project']}/{d['path']}"))]
        probe_texts, n = [], 0
        for t in probe:
            if n > 2_000_000:
                break
            probe_texts.append(t)
            n += len(t)
        m = measure_text_vs_ids(tok, probe_texts)
        measure[lang] = m
        ratio[lang] = m["xz_text_bytes_per_token"]  # bytes per token
    weight = {lang: train_tokens[lang] * ratio[lang] for lang in train_tokens}
    wsum = sum(weight.values())
    # Smallest first: a language whose whole training text fits leaves its unused bytes to the others.
    for lang in sorted(train_tokens, key=lambda x: weight[x]):
        lang_budget = int(0.98 * left * weight[lang] / wsum)
        docs = samples.pop(lang)
        s = _Stream(out, "train", lang)
        packed: list[dict] = []
        est = measure[lang]["xz_text_bytes_per_char"]  # updated from each written stream
        for group in _packages_in_order(docs, seed):
            group_chars = sum(len(d["text"]) for d in group)
            if (s.pending_chars + group_chars) * est > lang_budget - s.bytes - 40 * (len(s.docs) + len(group)):
                continue  # too big for what is left; smaller packages later in the order may fit
            for d in group:
                s.add(d)
            packed.extend(group)
            if s.pending_chars >= CHUNK:
                before, chars = s.bytes, s.pending_chars
                s.flush()
                est = (s.bytes - before) / chars
        n_docs = len(s.docs)
        s.close(out, "train", lang)
        used += s.bytes
        left -= s.bytes
        wsum -= weight[lang]
        contents["train"][lang] = {"docs": n_docs, "bytes": s.bytes, "chars": s.chars,
                                   "tokens": _tokens(tok, packed, known),
                                   "share_of_full_train_tokens": round(_tokens(tok, packed, known) /
                                                                       max(train_tokens[lang], 1), 4)}
        print(f"pack train-{lang}: {n_docs} docs, {s.bytes / 2**20:.2f} MiB (budget {lang_budget / 2**20:.2f})",
              flush=True)
    info = {
        "format": 1,
        "max_mib": max_mib,
        "tokenizer": {"dir": "tokenizer", "vocab_size": tok.get_vocab_size()},
        "contents": contents,
        "train_tokens_by_language": {lang: c["tokens"] for lang, c in contents["train"].items()},
        "train_tokens_total": sum(c["tokens"] for c in contents["train"].values()),
        "xz_text_vs_u16_ids": measure,
        "sampling": "all of val/e2/e3/e4; train by package (directory) in sha256(seed:pack:package) order, "
                    "per-language byte budget proportional to the language's training tokens",
        "seed": seed,
        "corpus_totals": manifest["totals"],
        "corpus_sources": [{k: s[k] for k in ("name", "kind", "version", "split", "license", "license_how")}
                           for s in manifest["sources"]],
        "seconds": round(time.time() - t0, 1),
    }
    (out / "pack.json").write_text(json.dumps(info, indent=1) + "\n")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    info["bytes"] = total
    (out / "pack.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"pack: {total / 2**20:.2f} MiB in {out} ({info['train_tokens_total'] / 1e6:.1f} M training tokens)")
    if total > budget:
        raise SystemExit(f"pack is {total / 2**20:.2f} MiB, over the {max_mib} MiB budget")
    return info


def _read_texts(path: Path) -> list[str]:
    data = lzma.decompress(path.read_bytes())  # concatenated xz streams decode as one
    text = data.decode("utf-8")
    return text.split(SEP) if text else []


def unpack(pack_dir: Path, dest: Path, check: bool = True) -> dict:
    """Rebuild DEST/tokens/ (and DEST/tokenizer/) from a pack, tokenizing with all cores."""
    from tokenizers import Tokenizer

    from engine_builds.corpus_shards import ShardWriter
    t0 = time.time()
    info = json.loads((pack_dir / "pack.json").read_text())
    tok = Tokenizer.from_file(str(pack_dir / "tokenizer" / "tokenizer.json"))
    if (dest / "tokenizer").resolve() != (pack_dir / "tokenizer").resolve():
        shutil.copytree(pack_dir / "tokenizer", dest / "tokenizer", dirs_exist_ok=True)
    out = dest / "tokens"
    got: dict = collections.defaultdict(dict)
    os.environ.setdefault("RAYON_NUM_THREADS", str(os.cpu_count() or 1))
    for split, langs in info["contents"].items():
        for lang, c in langs.items():
            texts = _read_texts(pack_dir / "text" / f"{split}-{lang}.xz")
            docs = [json.loads(line) for line in
                    lzma.decompress((pack_dir / "text" / f"{split}-{lang}.docs.xz").read_bytes()).decode().splitlines()]
            if len(docs) != len(texts):
                raise ValueError(f"{split}-{lang}: {len(texts)} texts but {len(docs)} documents")
            w = ShardWriter(out, split, lang)
            n = 0
            for start in range(0, len(texts), 4096):
                for d, enc in zip(docs[start:start + 4096], tok.encode_batch(texts[start:start + 4096])):
                    w.add(enc.ids, d)
                    n += len(enc.ids)
            w.close()
            got[split][lang] = n
            if check and n != c["tokens"]:
                raise ValueError(f"{split}-{lang}: {n} tokens, the pack says {c['tokens']}")
    took = time.time() - t0
    total = sum(v for langs in got.values() for v in langs.values())
    print(f"unpack: {total / 1e6:.1f} M tokens into {out} in {took:.1f}s")
    return {"tokens": {s: dict(v) for s, v in got.items()}, "seconds": round(took, 1)}
