"""The embedded-model pipeline on a tiny corpus: samples in the serving layout, a few training steps,
checkpoint/resume, export, and the export served by our engine."""

import gzip
import json
import random
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from completer.completion.fim import detect_template
from completer.tokenizer import Tokenizer
from engine_builds.fim_samples import CONTEXT, NONE, TARGET, SampleBuilder
from engine_builds.prepare_data import split_of
from tests.conftest import FIXTURE_MODEL, ROOT

MODULES = ["textwrap.py", "bisect.py", "heapq.py", "string.py", "fnmatch.py", "glob.py"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("data")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    with gzip.open(out / "corpus.jsonl.gz", "wt") as f:
        for i, m in enumerate(MODULES):
            split = "val" if i == 0 else "train"
            f.write(json.dumps({"path": m, "package": "", "split": split, "text": (stdlib / m).read_text()}) + "\n")
    (out / "tokenizer").mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(FIXTURE_MODEL / name, out / "tokenizer" / name)
    return out


def builder(tiny_data):
    tok = Tokenizer(tiny_data / "tokenizer")
    with gzip.open(tiny_data / "corpus.jsonl.gz", "rt") as f:
        files = [json.loads(line) for line in f]
    return tok, SampleBuilder(tok, detect_template(tok), files)


def test_fim_samples_follow_the_serving_layout(tiny_data):
    tok, b = builder(tiny_data)
    tpl = b.tpl
    rng = random.Random(0)
    seen_fim = 0
    for _ in range(200):
        ids, classes = b.sample(rng, 400)
        assert len(ids) == len(classes) <= 400
        if tpl.middle_id not in ids:
            assert ids[0] == tpl.file_sep_id  # a plain left-to-right sample
            continue
        seen_fim += 1
        mid = ids.index(tpl.middle_id)
        assert ids.count(tpl.middle_id) == 1 and ids[-1] == tok.id_of("<|endoftext|>")
        assert all(c == TARGET for c in classes[mid + 1:])
        assert all(c in (NONE, CONTEXT) for c in classes[:mid + 1])
        assert all(classes[i] == NONE for i, t in enumerate(ids) if t in tok.special_ids and i <= mid)
        if ids[0] == tpl.file_sep_id:  # prefix first: the Contract 1 order
            assert ids.index(tpl.prefix_id) < ids.index(tpl.suffix_id) < mid
    assert seen_fim > 100
    row_ids, row_classes = b.row(rng, 1025)
    assert len(row_ids) == len(row_classes) == 1025


def test_syntax_window_samples_are_cut_as_serving_cuts_them(tiny_data):
    # With SampleMix.syntax, the prefix window is what build_prompt gives a tree-backed document at
    # that cursor: it starts at a statement boundary, with the enclosing signatures first.
    from completer.completion.prompt import PromptSettings, build_prompt
    from engine_builds.fim_samples import SampleMix

    tok, plain = builder(tiny_data)
    b = SampleBuilder(tok, plain.tpl, plain.files, SampleMix(syntax=1.0, spm=0.0, context=0.0, plain=0.0))
    i = next(k for k, f in enumerate(b.files) if f["path"] == "textwrap.py")
    lines = b.lines[i]
    row = next(r for r, ln in enumerate(lines) if "chunks.reverse()" in ln)  # deep in TextWrapper
    settings = PromptSettings(budget_tokens=1000, heal=False)
    budget = 1000 - 2 * (1000 // 8) - len(tok.encode("textwrap.py")) - 8  # build_prompt's window budget
    above, below = b._syntax_windows(i, row, 8, row, int(budget * 0.75), int(budget * 0.25))
    assert above.startswith("class TextWrapper:\n")  # the enclosing class's signature
    assert [ln for ln in above.split("\n") if ln.strip()][1].startswith("    def ")  # then whole methods
    from completer.syntax import DocumentSyntax

    snap = DocumentSyntax("python", "".join(lines)).snapshot
    served = build_prompt(tok, b.tpl, lines, row, 8, path="textwrap.py", settings=settings, syntax=snap)
    ids = list(served.ids)
    assert tok.decode(ids[ids.index(b.tpl.prefix_id) + 1:ids.index(b.tpl.suffix_id)]) == above
    assert tok.decode(ids[ids.index(b.tpl.suffix_id) + 1:ids.index(b.tpl.middle_id)]).endswith(below)
    seen = 0
    rng = random.Random(1)
    for _ in range(60):
        ids, _ = b.sample(rng, 500)
        if b.tpl.prefix_id in ids:
            seen += 1
    assert seen > 30


def test_split_is_by_file_and_deterministic():
    assert split_of("a/b.py", 1) == split_of("a/b.py", 1)
    splits = {split_of(f"pkg/mod{i}.py", 1234) for i in range(300)}
    assert splits == {"train", "val", "test"}


def test_train_resume_export_and_serve(tiny_data, tmp_path):
    out, export = tmp_path / "run", tmp_path / "hf"
    base = [sys.executable, "-m", "engine_builds.train", "--preset", "draft", "--data", str(tiny_data),
            "--out", str(out), "--seq-len", "128", "--batch-size", "2", "--workers", "0", "--eval-every", "4",
            "--eval-rows", "2", "--warmup-steps", "2", "--device", "cpu"]
    r = subprocess.run(base + ["--steps", "4"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (out / "ckpt.pt").exists()
    r = subprocess.run(base + ["--steps", "6", "--resume", "--export", str(export), "--shard-mb", "0.5"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "resumed at step 4" in r.stdout
    log = json.loads((export / "train_log.json").read_text())
    assert log["steps"] == 6
    assert (export / "model.safetensors.index.json").exists()  # sharded below 0.5 MB

    from completer.completion.pipeline import Completer, CompletionRequest
    from completer.engines.torch.engine import TorchEngine

    engine = TorchEngine(export, device="cpu")
    result = Completer(engine).complete(CompletionRequest(["def f(x):\n", "    return "], 1, 11))
    assert isinstance(result.text, str) and result.stats.prefill_tokens > 0


def test_distill_loss_is_zero_only_where_the_student_matches_the_teacher():
    import torch

    from engine_builds.train import distill_loss, top1_agreement

    torch.manual_seed(0)
    teacher = torch.randn(2, 5, 11)
    classes = torch.tensor([[NONE, CONTEXT, TARGET, TARGET, TARGET], [TARGET, TARGET, NONE, CONTEXT, TARGET]])
    assert float(distill_loss(teacher.clone(), teacher, classes, 0.25)) == pytest.approx(0.0, abs=1e-6)
    student = teacher.clone()
    student[0, 0] = torch.randn(11)  # a NONE position: no weight, no loss
    assert float(distill_loss(student, teacher, classes, 0.25)) == pytest.approx(0.0, abs=1e-6)
    student[0, 2] = -teacher[0, 2]  # a TARGET position: its top token is now the teacher's worst
    assert float(distill_loss(student, teacher, classes, 0.25)) > 0.1
    same, count = top1_agreement(student, teacher, classes)
    assert (same, count) == (5, 6)  # six TARGET positions, one of them changed


def test_distilling_a_draft_reports_its_agreement_with_the_teacher(tiny_data, tmp_path):
    out, export = tmp_path / "run", tmp_path / "hf"
    cmd = [sys.executable, "-m", "engine_builds.train", "--preset", "tiny", "--data", str(tiny_data),
           "--out", str(out), "--seq-len", "128", "--batch-size", "2", "--workers", "0", "--eval-every", "0",
           "--eval-rows", "2", "--warmup-steps", "1", "--device", "cpu", "--steps", "2",
           "--distill-from", str(FIXTURE_MODEL), "--distill-weight", "0.8", "--export", str(export)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "top-1 agreement with the teacher" in r.stdout
    log = json.loads((export / "train_log.json").read_text())
    assert log["distilled_from"] == str(FIXTURE_MODEL)
    assert 0.0 <= log["evals"][-1]["agree"] <= 1.0 and set(log["evals"][-1]["agree_by_set"]) == {"all"}


def test_distilling_from_a_teacher_with_another_tokenizer_is_refused(tiny_data, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(FIXTURE_MODEL, other)
    vocab = json.loads((other / "tokenizer.json").read_text())
    first, second = list(vocab["model"]["vocab"])[300:302]  # swap two ids: same size, another tokenizer
    vocab["model"]["vocab"][first], vocab["model"]["vocab"][second] = \
        vocab["model"]["vocab"][second], vocab["model"]["vocab"][first]
    (other / "tokenizer.json").write_text(json.dumps(vocab))
    cmd = [sys.executable, "-m", "engine_builds.train", "--preset", "tiny", "--data", str(tiny_data),
           "--out", str(tmp_path / "run"), "--seq-len", "128", "--batch-size", "2", "--workers", "0",
           "--eval-rows", "2", "--device", "cpu", "--steps", "1", "--distill-from", str(other)]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert r.returncode != 0 and "its tokenizer is not the data's" in r.stderr
