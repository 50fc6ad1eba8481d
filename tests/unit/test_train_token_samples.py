"""The token-space sample cutter (engine_builds/token_samples.py): its samples are, token for token,
what layout_ids builds from the same text cut at the same lines; loss classes; packing; and the
trainer's clock schedule and resume on token shards."""

import json
import random
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from completer.completion.fim import detect_template
from completer.completion.prompt import layout_ids
from completer.tokenizer import Tokenizer
from engine_builds.corpus_shards import write_shard
from engine_builds.fim_samples import CONTEXT, NONE, TARGET, SampleMix
from engine_builds.token_samples import TokenCorpus, TokenSampleBuilder
from tests.conftest import ROOT

TOKENIZER = ROOT / "completer" / "models" / "embedded"  # the 8,192 stdlib tokenizer: same pre-tokenizer as the corpus one
PY_MODULES = ["textwrap.py", "bisect.py", "heapq.py", "string.py", "fnmatch.py", "glob.py", "shlex.py", "colorsys.py"]


def tiny_texts() -> dict[str, list[dict]]:
    """Real source files per language: {"path", "project", "package", "text"} (a few packages, so
    sibling files exist for repo-level context). Python docs are also split off as val/e2/e3."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    out = {"python": [{"path": m, "project": "cpython", "package": "cpython/lib" if i % 2 else "cpython/more",
                       "text": (stdlib / m).read_text()} for i, m in enumerate(PY_MODULES)]}
    out["typescript"] = [{"path": str(p.relative_to(ROOT / "editors" / "vscode")), "project": "vscode-ext",
                          "package": "vscode-ext/src", "text": p.read_text()}
                         for p in sorted((ROOT / "editors" / "vscode" / "src").rglob("*.ts"))]
    out["lua"] = [{"path": str(p.relative_to(ROOT / "editors" / "neovim")), "project": "nvim-ext",
                   "package": "nvim-ext", "text": p.read_text()} for p in sorted((ROOT / "editors" / "neovim").rglob("*.lua"))]
    # A document with blank-line runs, CRLF line ends, trailing blanks and a literal sentinel string.
    out["python"].append({"path": "odd.py", "project": "cpython", "package": "cpython/lib",
                          "text": "x = 1\r\ny = 2\r\n\n\n\ndef f():  \n    return '<|endoftext|>'\n\n\n\n\n  \nz = 3"})
    return out


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    tok = Tokenizer(TOKENIZER)
    (root / "tokenizer").mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (root / "tokenizer" / name).write_bytes((TOKENIZER / name).read_bytes())
    texts = tiny_texts()
    for lang, docs in texts.items():
        write_shard(root / "tokens", "train", lang, [(tok.encode(d["text"]), d) for d in docs])
        write_shard(root / "tokens", "val", lang, [(tok.encode(d["text"]), d) for d in docs[:2]])
    return root, tok, texts


def _builder(shards, mix=None):
    root, tok, texts = shards
    corpus = TokenCorpus(root / "tokens", "train")
    return TokenSampleBuilder(tok, detect_template(tok), corpus, mix or SampleMix()), corpus, texts


def _text_of(corpus, texts, g):
    return next(d["text"] for d in texts[corpus.langs[g]] if d["path"] == corpus.paths[g])


def test_line_starts_are_boundaries_of_the_whole_text(shards):
    b, corpus, texts = _builder(shards)
    tok = b.tok
    for g in range(len(corpus)):
        ids, text = corpus.doc(g), _text_of(corpus, texts, g)
        assert tok.decode(ids.tolist()) == text  # byte-level BPE: decoding is exact
        starts = b.line_starts(ids)
        assert starts[0] == 0 and starts[-1] == len(ids)
        for p in starts[1:-1][::3]:
            head = tok.decode(ids[:p].tolist())
            assert head.endswith("\n") and not text[len(head):].startswith(("\n", "\r"))
            assert tok.encode(head) == ids[:p].tolist() and tok.encode(text[len(head):]) == ids[p:].tolist()


def test_samples_equal_layout_ids_of_the_same_text(shards):
    # Every sample, rebuilt from the document's text with the serving code's layout_ids (and
    # fim_samples' suffix-first order), must be the same ids: windows cut at line boundaries are
    # slices; spans that end mid-line are re-encoded from the line's text.
    b, corpus, texts = _builder(shards, SampleMix(plain=0.1, context=0.5))
    tok, tpl = b.tok, b.tpl
    rng = random.Random(4)
    seen = {"fim": 0, "plain": 0, "midline": 0, "context": 0, "spm": 0, "multi": 0, "inexact": 0}
    for _ in range(400):
        trace: dict = {}
        ids, classes = b.sample(rng, rng.randint(128, 1024), trace)
        ids = ids.tolist()
        g = trace["doc"]
        doc, text = corpus.doc(g), _text_of(corpus, texts, g)

        def char(p, doc=doc):
            return len(tok.decode(doc[:p].tolist()))

        if trace["kind"] == "plain":
            seen["plain"] += 1
            want = [tpl.file_sep_id, *tok.encode(trace["path"] + "\n"), *tok.encode(text[char(trace["start"]):char(trace["end"])])]
            if trace["end"] == len(doc):
                want.append(tok.id_of("<|endoftext|>"))
            assert ids == want
            assert set(classes[:len(tok.encode(trace["path"] + "\n")) + 1].tolist()) == {NONE}
            continue
        seen["fim"] += 1
        if not trace["exact"]:  # a window had to be cut inside a line: not comparable
            seen["inexact"] += 1
            continue
        above = text[char(trace["above_start"]):char(trace["line_start"])]
        if trace["mid_end_char"] is not None:
            seen["midline"] += 1
            body = text[char(trace["line_start"]):char(trace["body_end"])]
            middle = body[:trace["mid_end_char"]]
            suffix = body[trace["mid_end_char"]:] + text[char(trace["body_end"]):char(trace["suffix_cut"])]
        else:
            middle = text[char(trace["line_start"]):char(trace["suffix_from"])]
            suffix = text[char(trace["suffix_from"]):char(trace["suffix_cut"])]
            seen["multi"] += "\n" in middle
        context = ()
        if trace["context"]:
            seen["context"] += 1
            c = trace["context"]
            other, other_text = corpus.doc(c["doc"]), _text_of(corpus, texts, c["doc"])
            context = ((c["path"], other_text[len(tok.decode(other[:c["start"]].tolist())):
                                              len(tok.decode(other[:c["end"]].tolist()))]),)
        if trace["spm"]:
            seen["spm"] += 1
            head = [tpl.suffix_id, *tok.encode(suffix), tpl.prefix_id, *tok.encode(above), tpl.middle_id]
        else:
            head, _ = layout_ids(tok, tpl, path=trace["path"], above=above, suffix=suffix, left="", context=context)
        assert ids == head + tok.encode(middle) + [tok.id_of("<|endoftext|>")]
        mid = len(head)
        assert set(classes[mid:].tolist()) == {TARGET}
        assert all(classes[i] == (NONE if t in tok.special_ids else CONTEXT) for i, t in enumerate(head))
    assert seen["fim"] > 250 and seen["plain"] > 15
    assert seen["midline"] > 30 and seen["context"] > 15 and seen["spm"] > 10 and seen["multi"] > 30
    assert seen["inexact"] < seen["fim"] // 10


def test_rows_pack_whole_samples_and_pad_without_loss(shards):
    b, _, _ = _builder(shards)
    tok, tpl = b.tok, b.tpl
    rng = random.Random(9)
    for _ in range(20):
        ids, classes = b.row(rng, 1025)
        assert ids.shape == classes.shape == (1025,) and ids.dtype == np.int32
        pad = tok.id_of("<|fim_pad|>")
        tail = np.flatnonzero(ids != pad)
        assert tail.size and (classes[tail[-1] + 1:] == NONE).all() and (ids[tail[-1] + 1:] == pad).all()
        assert len(ids) - (tail[-1] + 1) < 128  # packing stops only when less than a minimal sample is left
        starts = [tpl.file_sep_id, tpl.suffix_id]
        assert ids[0] in starts
        # every middle ends with <|endoftext|>, a target; sentinels never carry loss
        sentinels = np.isin(ids, [tpl.prefix_id, tpl.suffix_id, tpl.middle_id, tpl.file_sep_id, pad])
        assert (classes[sentinels] == NONE).all()
        assert (classes[ids == tok.id_of("<|endoftext|>")] == TARGET).all()
        # each FIM sample has one middle, which ends with <|endoftext|> (plain samples may end with one too)
        assert np.count_nonzero(ids == tpl.middle_id) <= np.count_nonzero(ids == tok.id_of("<|endoftext|>"))


def test_cutting_is_fast_enough_to_never_starve_a_gpu(shards):
    import time

    b, _, _ = _builder(shards)
    rng = random.Random(1)
    t0 = time.perf_counter()
    n = sum(len(b.row(rng, 2049)[0]) for _ in range(30))
    assert n / (time.perf_counter() - t0) > 300_000  # ~6 M tokens/s per core measured here; a loose floor


def test_clock_schedule_warms_up_and_ends_at_the_floor():
    from engine_builds.train import TrainConfig, clock_lr

    cfg = TrainConfig(lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert clock_lr(0, cfg, 0.0, cfg.lr) == pytest.approx(1e-4)
    assert clock_lr(9, cfg, 0.0, cfg.lr) == pytest.approx(1e-3)
    assert clock_lr(500, cfg, 0.5, cfg.lr) == pytest.approx(0.55e-3)
    assert clock_lr(500, cfg, 1.0, cfg.lr) == pytest.approx(1e-4)
    # a restart from half the peak (--stop-minutes) ends at the same floor
    assert clock_lr(500, cfg, 1.0, cfg.lr / 2, warm=False) == pytest.approx(1e-4)
    assert clock_lr(0, cfg, 0.0, cfg.lr / 2, warm=False) == pytest.approx(0.5e-3)


def test_train_on_shards_by_the_clock_then_resume(shards, tmp_path):
    root, _, _ = shards
    out = tmp_path / "run"
    base = [sys.executable, "-m", "engine_builds.train", "--preset", "tiny", "--tokens", str(root), "--out", str(out),
            "--seq-len", "128", "--batch-size", "2", "--workers", "0", "--eval-every", "0", "--eval-rows", "1",
            "--warmup-steps", "2", "--clock-after", "2", "--log-every", "5", "--device", "cpu"]
    r = subprocess.run(base + ["--minutes", "0.04"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "clock started after 2 steps" in r.stdout and "stopped at step" in r.stdout
    first = json.loads(json.dumps(__import__("torch").load(out / "ckpt.pt", weights_only=False)["state"],
                                  default=str))
    assert first["clock_seconds"] >= 0.04 * 60 * 0.99
    # the same budget is used up: a resume stops at once; a longer --minutes continues the cosine
    r = subprocess.run(base + ["--minutes", "0.08", "--resume", "--export", str(tmp_path / "hf")], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resumed at step {first['step']}" in r.stdout
    log = json.loads((tmp_path / "hf" / "train_log.json").read_text())
    assert log["steps"] > first["step"] and log["clock_minutes"] >= 0.08 * 0.99
    assert set(log["best_val_by_set"]) == {"lua", "python", "typescript"}
    assert {p.name for p in (tmp_path / "hf").iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json",
                                                            "tokenizer_config.json", "generation_config.json"}
