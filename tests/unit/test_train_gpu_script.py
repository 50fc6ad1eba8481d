"""engine_builds/gpu_train.sh dry-run on the CPU: a tiny pack built here, tiny models, every step of
the GPU run (unpack, prediction, four models trained side by side by the clock, val loss per
language, E2/E3/E4 line completions through the completer pipeline, export, tars, results table)
writing the same files the GPU run brings back."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from engine_builds import corpus
from engine_builds import corpus_filters as flt
from engine_builds.corpus_pack import pack
from tests.conftest import ROOT
from tests.unit.test_train_token_samples import TOKENIZER, tiny_texts

SCRIPT = ROOT / "engine_builds" / "gpu_train.sh"
NAMES = ["draft", "target-s", "target-m", "target-l"]


def tiny_pack(tmp: Path) -> Path:
    """corpus_pack.pack over a small corpus text directory: train/val in three languages, E2 and E3
    (Python), E4 (TypeScript, Lua)."""
    root = tmp / "corpus"
    (root / "text").mkdir(parents=True)
    (root / "tokenizer").mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (root / "tokenizer" / name).write_bytes((TOKENIZER / name).read_bytes())
    texts = tiny_texts()
    splits = {"train": {lang: docs for lang, docs in texts.items()},
              "val": {lang: docs[:1] for lang, docs in texts.items()},
              "e2": {"python": texts["python"][:2]}, "e3": {"python": texts["python"][2:4]},
              "e4": {"typescript": texts["typescript"], "lua": texts["lua"]}}
    files = []
    for split, langs in splits.items():
        for lang, docs in langs.items():
            with open(root / "text" / f"{split}-{lang}.jsonl", "w") as f:
                for d in docs:
                    rec = {**d, "version": "1", "license": "MIT", "sha256": flt.content_hash(d["text"])}
                    f.write(json.dumps(rec) + "\n")
                    files.append({"path": f"{d['project']}/{d['path']}", "project": d["project"], "version": "1",
                                  "language": lang, "split": split, "license": "MIT", "sha256": rec["sha256"],
                                  "chars": len(d["text"]), "tokens": None})
    (root / "manifest.json").write_text(json.dumps({
        "files": files, "totals": corpus.totals_of(files),
        "sources": [{"name": "cpython", "kind": "stdlib", "version": "1", "split": "train", "license": "PSF-2.0",
                     "license_how": "test"}]}))
    pack(root, tmp / "pack", max_mib=2.0, seed=7)
    return tmp / "pack"


def run_script(tmp: Path, pack_dir: Path, **env) -> subprocess.CompletedProcess:
    full = {**os.environ, "PYTHON": sys.executable, "DEVICE": "cpu", "PACK": str(pack_dir), "RUN": str(tmp / "run"),
            "OUT": str(tmp / "out"), "MINUTES": "0.05", "TOTAL_SECONDS": "300", "SEQ": "128", "BATCH": "2",
            "WORKERS": "0", "WARMUP": "2", "EVAL_ROWS": "1", "EVAL_SECONDS": "0", "EVAL_CASES": "3",
            "MODELS": " ".join(f"{n}:tiny:2e-3" for n in NAMES), **env}
    return subprocess.run(["bash", str(SCRIPT)], cwd=ROOT, env=full, capture_output=True, text=True, timeout=240)


def test_refuses_to_start_without_the_pack(tmp_path):
    r = run_script(tmp_path, tmp_path / "missing")
    assert r.returncode == 2
    assert "pack.json not found" in r.stderr and "carry" in r.stderr
    assert not (tmp_path / "run").exists()  # nothing started


def test_refuses_minutes_or_presets_that_cannot_run(tmp_path):
    (tmp_path / "tokenizer").mkdir()  # a pack as far as the first check looks
    (tmp_path / "pack.json").write_text("{}")
    (tmp_path / "tokenizer" / "tokenizer.json").write_text("{}")
    r = run_script(tmp_path, tmp_path, MINUTES="9", TOTAL_SECONDS="570")
    assert r.returncode == 2 and "MINUTES=9 does not fit" in r.stderr and "at most 6.6" in r.stderr
    assert not (tmp_path / "run").exists()
    r = run_script(tmp_path, tmp_path, MODELS="draft:no-such:1e-3")
    assert r.returncode == 2 and "unknown preset 'no-such'" in r.stdout


def test_dry_run_writes_what_the_gpu_run_brings_back(tmp_path):
    pack_dir = tiny_pack(tmp_path)
    # a fifth model whose training fails (a learning rate that does not parse) must not stop the others
    r = run_script(tmp_path, pack_dir, MODELS=" ".join(f"{n}:tiny:2e-3" for n in NAMES) + " broken:tiny:fast")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "training failed: broken" in r.stdout
    out = tmp_path / "out"
    got = sorted(p.name for p in out.iterdir())
    assert got == sorted([f"{n}.tar" for n in NAMES] + ["logs.tar", "results.json"])
    assert len(got) <= 8 and all(p.stat().st_size < 16 * 2**20 for p in out.iterdir())
    with tarfile.open(out / "target-s.tar") as t:
        names = set(t.getnames())
        assert {f"target-s/{f}" for f in ("config.json", "model.safetensors", "tokenizer.json",
                                          "tokenizer_config.json", "generation_config.json")} <= names
        config = json.load(t.extractfile("target-s/config.json"))
    assert config["architectures"] == ["LlamaForCausalLM"] and config["torch_dtype"] == "bfloat16"
    assert config["tie_word_embeddings"] and config["vocab_size"] == 8192
    res = json.loads((out / "results.json").read_text())
    assert set(res["models"]) == {*NAMES, "broken"} and res["models"].pop("broken")["train"] is None
    for m in res["models"].values():
        assert m["steps"] > 0 and m["tokens"] > 0 and m["tokens_per_second"] > 0
        assert set(m["val_by_language"]) == {"lua", "python", "typescript"}
        ev = m["eval"]
        assert set(ev["suites"]) == {"e2-python", "e3-python", "e4-lua", "e4-typescript"}
        assert ev["cases_done"] == ev["cases_planned"] == 4 * 3 and not ev["stopped_by_deadline"]
    assert set(res["phases"]) >= {"setup", "unpack", "train", "tars", "eval", "logs", "total"}
    assert res["prediction"]["rows"][0]["preset"] == "tiny"
    with tarfile.open(out / "logs.tar") as t:
        logs = t.getnames()
    assert any(n.endswith("target-l.log") for n in logs) and any(n.endswith("eval.json") for n in logs)
    tail = r.stdout.strip().splitlines()
    assert tail[-1].startswith("total ") and any(line.startswith("model ") and "E2" in line for line in tail[-8:])


def test_parallel_unpack_rebuilds_the_shards_exactly(tmp_path):
    # CRLF line ends and a literal "<|endoftext|>" in odd.py: the shards hold the serving tokenizer's ids
    # (sentinel strings as text), and pack.json's counts (sentinel strings as sentinels) still check out.
    from completer.tokenizer import Tokenizer
    from engine_builds.corpus_shards import Shard
    from engine_builds.gpu_eval import read_pack_files
    from engine_builds.gpu_unpack import unpack

    pack_dir = tiny_pack(tmp_path)
    done = unpack(pack_dir, tmp_path / "gpu", workers=2, strict=True)
    assert not done["count_mismatches"]
    tok = Tokenizer(pack_dir / "tokenizer")
    info = json.loads((pack_dir / "pack.json").read_text())
    for split, langs in info["contents"].items():
        for lang in langs:
            shard = Shard(tmp_path / "gpu" / "tokens", split, lang)
            files = read_pack_files(pack_dir, split, lang)
            assert [d["path"] for d in shard.docs] == [f["path"] for f in files]
            for i, f in enumerate(files):
                assert shard.doc(i).tolist() == tok.encode(f["text"])
    assert any("\r\n" in f["text"] for f in read_pack_files(pack_dir, "train", "python"))
    again = unpack(pack_dir, tmp_path / "gpu", workers=2)  # the same pack: nothing to do
    assert again["seconds"] == done["seconds"]
