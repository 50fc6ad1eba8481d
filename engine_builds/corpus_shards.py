"""The cached tokenized corpus, one shard per (split, language), so a trainer reads token ids with a
memory map instead of tokenizing on the fly:

    tokens/{split}-{lang}.u16          token ids of every document, concatenated, uint16 little-endian
    tokens/{split}-{lang}.idx          uint64 little-endian start offsets (in tokens), one per document,
                                       then the end of the last one (so document i is ids[idx[i]:idx[i+1]])
    tokens/{split}-{lang}.docs.jsonl   one {"path", "project", "package"} per document, in the same order;
                                       `package` (project/dir) lets a trainer pick sibling files as
                                       repo-level context

Documents are whole files encoded without special tokens; a trainer inserts <|file_sep|> and
<|endoftext|> itself. uint16 holds any vocabulary up to 65,536 entries.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np


def shard_paths(root: Path, split: str, lang: str) -> tuple[Path, Path, Path]:
    stem = root / f"{split}-{lang}"
    return stem.with_suffix(".u16"), stem.with_suffix(".idx"), Path(str(stem) + ".docs.jsonl")


class ShardWriter:
    """Streams documents into one shard; the index is written on close."""

    def __init__(self, root: Path, split: str, lang: str):
        root.mkdir(parents=True, exist_ok=True)
        self.paths = shard_paths(root, split, lang)
        self._ids = open(self.paths[0], "wb")  # noqa: SIM115 - closed in close()
        self._docs = open(self.paths[2], "w", encoding="utf-8")  # noqa: SIM115
        self._offsets = [0]

    def add(self, ids: Sequence[int], meta: dict) -> None:
        arr = np.asarray(ids, dtype=np.uint32)
        if arr.size and int(arr.max()) > 0xFFFF:
            raise ValueError("token id does not fit in uint16")
        self._ids.write(arr.astype("<u2").tobytes())
        self._offsets.append(self._offsets[-1] + int(arr.size))
        self._docs.write(json.dumps({k: meta[k] for k in ("path", "project", "package")}, ensure_ascii=False) + "\n")

    def close(self) -> int:
        self._ids.close()
        self._docs.close()
        np.asarray(self._offsets, dtype="<u8").tofile(self.paths[1])
        return self._offsets[-1]


def encode_docs(tok, docs: Iterable[dict], batch_size: int = 512) -> Iterator[tuple[dict, list[int]]]:
    """Each document ({"text", ...}) with its token ids, in order, encoded a batch at a time (the
    tokenizer spreads a batch over all cores). A sentinel's spelling inside source code (a FIM
    tokenizer's own tests, say) is text, never the sentinel's id, as when serving
    (completer/tokenizer.py) and in gpu_unpack.py."""
    tok.encode_special_tokens = True
    batch: list[dict] = []
    for d in docs:
        batch.append(d)
        if len(batch) >= batch_size:
            yield from _encode_batch(tok, batch)
            batch = []
    yield from _encode_batch(tok, batch)


def _encode_batch(tok, batch: list[dict]) -> Iterator[tuple[dict, list[int]]]:
    for d, enc in zip(batch, tok.encode_batch([d["text"] for d in batch], add_special_tokens=False)):
        yield d, enc.ids


def write_shard(root: Path, split: str, lang: str, docs: Iterable[tuple[Sequence[int], dict]]) -> int:
    w = ShardWriter(root, split, lang)
    for ids, meta in docs:
        w.add(ids, meta)
    return w.close()


class Shard:
    """Read side: ids as a memory map, offsets and the documents table in memory."""

    def __init__(self, root: Path, split: str, lang: str):
        ids_path, idx_path, docs_path = shard_paths(root, split, lang)
        size = ids_path.stat().st_size
        self.ids = np.memmap(ids_path, dtype="<u2", mode="r") if size else np.zeros(0, dtype="<u2")
        self.offsets = np.fromfile(idx_path, dtype="<u8")
        with open(docs_path, encoding="utf-8") as f:
            self.docs = [json.loads(line) for line in f]
        if len(self.offsets) != len(self.docs) + 1 or int(self.offsets[-1]) != len(self.ids):
            raise ValueError(f"{ids_path}: index does not match ids/documents")

    def __len__(self) -> int:
        return len(self.docs)

    def doc(self, i: int) -> np.ndarray:
        return self.ids[int(self.offsets[i]):int(self.offsets[i + 1])]

    @property
    def n_tokens(self) -> int:
        return int(self.offsets[-1])
