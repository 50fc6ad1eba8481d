"""Fine-tuning shards (engine_builds/finetune_shards.py): the corpus's text re-encoded with a shipped
model's tokenizer, read back the way train.py reads them."""

import gzip
import json
import sys

from completer.tokenizer import Tokenizer
from engine_builds import finetune_shards
from engine_builds.corpus_shards import Shard
from engine_builds.token_samples import TokenCorpus


def write_jsonl(path, docs):
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))


def test_shards_hold_the_drawn_train_files_and_every_val_file(tmp_path, monkeypatch, fixture_model_dir):
    text = tmp_path / "text"
    text.mkdir()
    train = [{"path": f"m{i}.py", "project": f"p{i % 3}", "package": f"p{i % 3}/m", "license": "MIT",
              "text": f"x{i} = {i}\n" * (i + 1)} for i in range(40)]
    write_jsonl(text / "train-python.jsonl", train)
    write_jsonl(text / "val-python.jsonl", [{"path": "v.py", "project": "p0", "package": "p0/v", "text": "y = 1\n"}])
    write_jsonl(text / "e3-python.jsonl", [{"path": "held.py", "project": "held", "text": "never = 1\n"}])
    stdlib = tmp_path / "stdlib.jsonl.gz"
    with gzip.open(stdlib, "wt") as f:
        for split in ("train", "val", "test"):
            f.write(json.dumps({"path": f"lib/{split}.py", "split": split, "text": f"{split} = 1\n"}) + "\n")
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["finetune_shards", "--model", str(fixture_model_dir), "--text", str(text),
                                      "--stdlib", str(stdlib), "--fraction", "0.5", "--out", str(out)])
    finetune_shards.main()

    tok = Tokenizer(fixture_model_dir)
    shard = Shard(out / "tokens", "train", "python")
    drawn = {d["path"] for d in shard.docs}
    assert 8 < len(drawn) < 32 and drawn <= {d["path"] for d in train}  # about half, by file
    by_path = {d["path"]: d for d in train}
    for i, meta in enumerate(shard.docs):
        assert shard.doc(i).tolist() == tok.encode(by_path[meta["path"]]["text"])
    assert [d["path"] for d in Shard(out / "tokens", "val", "stdlib").docs] == ["lib/val.py"]
    assert TokenCorpus(out / "tokens", "val").languages == ["python", "stdlib"]
    report = json.loads((out / "finetune_shards.json").read_text())
    assert report["sets"]["train-python"]["tokens"] == shard.n_tokens
    assert {p["licenses"][0] for p in report["sets"]["train-python"]["projects"].values()} == {"MIT"}
    assert not any("held" in json.dumps(s) for s in report["sets"].values())
    assert (out / "tokenizer" / "tokenizer.json").read_bytes() == (fixture_model_dir / "tokenizer.json").read_bytes()

    # The same seed draws the same files.
    again = tmp_path / "again"
    monkeypatch.setattr(sys, "argv", ["finetune_shards", "--model", str(fixture_model_dir), "--text", str(text),
                                      "--stdlib", "", "--fraction", "0.5", "--out", str(again)])
    finetune_shards.main()
    assert {d["path"] for d in Shard(again / "tokens", "train", "python").docs} == drawn
    assert not (again / "tokens" / "val-stdlib.u16").exists()


def test_a_language_can_have_a_share_of_its_own(tmp_path, monkeypatch, fixture_model_dir):
    text = tmp_path / "text"
    text.mkdir()
    for lang, ext in (("python", "py"), ("lua", "lua")):
        write_jsonl(text / f"train-{lang}.jsonl", [{"path": f"m{i}.{ext}", "project": "p", "license": "MIT",
                                                    "text": f"x{i} = {i}\n"} for i in range(40)])
        write_jsonl(text / f"val-{lang}.jsonl", [{"path": f"v.{ext}", "project": "p", "text": "y = 1\n"}])
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["finetune_shards", "--model", str(fixture_model_dir), "--text", str(text),
                                      "--stdlib", "", "--languages", "python", "lua", "--fraction", "0.25",
                                      "--fraction-of", "lua=1", "--out", str(out)])
    finetune_shards.main()
    assert len(Shard(out / "tokens", "train", "lua").docs) == 40
    assert 2 < len(Shard(out / "tokens", "train", "python").docs) < 20
    assert json.loads((out / "finetune_shards.json").read_text())["fraction_of"] == {"lua": 1.0}
