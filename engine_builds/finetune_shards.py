"""Token shards of the broad corpus in a shipped model's own tokenizer, for fine-tuning that model
(train.py --tokens DIR --init-from MODEL) without a GPU.

    python -m engine_builds.finetune_shards --model completer/models/embedded --languages python \
        --fraction 0.3 --out runs/ft-data

The corpus builder's shards (engine_builds/corpus.py) use the new multi-language tokenizer, which a
model trained with the old one cannot read. This re-encodes a seeded share of the corpus's train
files (whole files, drawn by file) with the model's tokenizer.json, and the val files in full, as the
shard layout train.py reads (corpus_shards.py). The standard library's val split
(data/stdlib) becomes one more val set, `stdlib`, so that a fine-tune shows what it costs there.
Hold-outs stay out: the corpus's E2/E3/E4 splits are other files (text/e*-*.jsonl), never read here.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import shutil
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from engine_builds.corpus_shards import ShardWriter, encode_docs
from engine_builds.corpus_tokenizer import read_docs

BATCH = 1024


def write_split(tok, out: Path, split: str, name: str, docs: Iterable[dict]) -> dict:
    """Encode `docs` into the shard {split}-{name}: its token count, and per project its tokens,
    version and licenses (what a model trained on the shard is derived from)."""
    writer = ShardWriter(out / "tokens", split, name)
    projects: dict[str, dict] = {}
    for d, ids in encode_docs(tok, docs, BATCH):
        writer.add(ids, {"path": d["path"], "project": d.get("project", ""),
                         "package": d.get("package") or d.get("project", "")})
        p = projects.setdefault(d.get("project", ""), {"version": d.get("version", ""), "tokens": 0,
                                                       "licenses": Counter()})
        p["tokens"] += len(ids)
        p["licenses"][d.get("license", "")] += 1
    ordered = sorted(projects.items(), key=lambda kv: -kv[1]["tokens"])
    return {"tokens": writer.close(),
            "projects": {k: {**v, "licenses": sorted(v["licenses"])} for k, v in ordered}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="the model whose tokenizer.json encodes the shards")
    ap.add_argument("--text", type=Path, default=Path("data/corpus/text"), help="the corpus builder's text files")
    ap.add_argument("--stdlib", default="data/stdlib/corpus.jsonl.gz",
                    help="prepare_data's corpus: its val split becomes the `stdlib` val set ('' for none)")
    ap.add_argument("--languages", nargs="+", default=["python"])
    ap.add_argument("--fraction", type=float, default=0.3, help="share of the train files, drawn by file")
    ap.add_argument("--fraction-of", nargs="*", default=[], metavar="LANG=F",
                    help="another share for these languages (e.g. lua=1 typescript=0.5: small ones weigh more)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    fractions = {lang: float(f) for lang, f in (item.split("=", 1) for item in args.fraction_of)}
    from tokenizers import Tokenizer

    (args.out / "tokenizer").mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if (args.model / name).exists():
            shutil.copy(args.model / name, args.out / "tokenizer" / name)
    tok = Tokenizer.from_file(str(args.model / "tokenizer.json"))
    t0 = time.time()
    report: dict = {"model": str(args.model), "fraction": args.fraction, "fraction_of": fractions, "seed": args.seed,
                    "sets": {}}
    for lang in args.languages:
        rng, fraction = random.Random(args.seed), fractions.get(lang, args.fraction)
        drawn = (d for d in read_docs(args.text / f"train-{lang}.jsonl") if rng.random() < fraction)
        for split, docs in (("train", drawn), ("val", read_docs(args.text / f"val-{lang}.jsonl"))):
            written = report["sets"][f"{split}-{lang}"] = write_split(tok, args.out, split, lang, docs)
            print(f"{split}-{lang}: {written['tokens'] / 1e6:.1f}M tokens from {len(written['projects'])} projects "
                  f"({time.time() - t0:.0f} s)", flush=True)
    if args.stdlib:
        with gzip.open(args.stdlib, "rt", encoding="utf-8") as f:
            val = [d for d in map(json.loads, f) if d["split"] == "val"]
        for d in val:
            d.update(project="cpython-stdlib", package="stdlib/" + d["path"].rsplit("/", 1)[0], license="PSF-2.0")
        written = report["sets"]["val-stdlib"] = write_split(tok, args.out, "val", "stdlib", val)
        print(f"val-stdlib: {written['tokens'] / 1e6:.2f}M tokens", flush=True)
    (args.out / "finetune_shards.json").write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
