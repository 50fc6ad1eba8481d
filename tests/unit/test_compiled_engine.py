"""The CPU's compiled engine (completer/engines/torch/aot.py): AOTInductor packages built once per
model and machine by a separate process, cached in a private directory, loaded at start-up instead of
compiled, never trusted when stale or corrupt, and never compiling inside a request.

Each build of the fixture model takes ~45 s on 2 cores; the module builds once, in the background (as
the server does by default), and the engine compiled before serving loads what that build made: the
builder process is the same, and a foreground build's waiting is checked with a stand-in builder
(test_a_corrupt_or_foreign_entry_is_rebuilt_never_loaded)."""

import json
import os
import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from completer.engines.torch import aot
from completer.engines.torch import compile as compile_module
from completer.engines.torch.engine import TorchEngine

from .test_torch_engine import PROMPTS, reference_greedy, run


@pytest.fixture(scope="module")
def cache_home(compile_cache_home):
    """The session's $XDG_CACHE_HOME for builds: the packages are built into it, under a key that no
    other test builds."""
    home = compile_cache_home
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(home))
        for var in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
            mp.delenv(var, raising=False)
        yield home


def make_engine(model_dir, compile, max_seq=256):
    return TorchEngine(model_dir, device="cpu", max_seq=max_seq, decode_dtype="none", edit_reuse=False,
                       max_draft=2, num_threads=1, compile=compile)


@dataclass
class BackgroundBuild:
    """What an engine did while its packages were built in the background, and after."""

    state: str
    eager: bool
    finished_early: bool
    usable_seq: int
    max_seq: int
    expected: list[int]
    answered_eager: list[int]
    finished: bool
    engine: TorchEngine
    prompt: list[int]


@pytest.fixture(scope="module")
def background(cache_home, fixture_model_dir):
    """The module's one build. No packages yet: the engine answers at once, eager, while a separate
    process builds them (the whole cache stays usable: nothing is written here meanwhile), then
    switches to them."""
    eng = make_engine(fixture_model_dir, "background")
    state, eager, finished_early = eng.compiler.state, eng._decode_fn is eng.model, eng.compile_finished.is_set()
    prompt = eng.tokenizer.encode(PROMPTS[1])
    expected = reference_greedy(eng, prompt, 16)
    answered = run(eng, prompt, max_new_tokens=16)[0]
    return BackgroundBuild(state, eager, finished_early, eng.compiler.usable_seq(), eng.max_seq, expected, answered,
                           eng.compile_finished.wait(600), eng, prompt)


@pytest.fixture(scope="module")
def compiled(background, fixture_model_dir):
    """An engine compiled before serving (compile="on"): it loads the packages the build made."""
    return make_engine(fixture_model_dir, True)


def test_packages_are_built_into_the_private_cache_and_loaded(compiled, cache_home, fixture_model_dir):
    info = compiled.describe()
    assert info["compiled"] and info["compile"] == "compiled" and not compiled.static_decode
    assert isinstance(compiled._decode_fn, aot.AotStep)
    assert compiled.compile_finished.is_set()  # nothing left to wait for: the server starts no watcher
    entry = Path(info["compiled_engine"])
    root = cache_home / "completer" / "engines"
    assert entry.parent == root and (entry / "manifest.json").is_file()
    for d in (cache_home / "completer", root, entry):
        assert stat.S_IMODE(os.stat(d).st_mode) & 0o077 == 0, d  # only this user can read the code in it
    assert sorted(p.name for p in entry.glob("*.pt2")) == sorted(f"{k}.pt2" for k in aot.KINDS)
    same = aot.Entry.for_model(fixture_model_dir, "float32", 256, 1)
    assert same.path == entry and same.state() == "ready"
    # What a package depends on is in its key: another cache length or thread count is another entry.
    assert aot.Entry.for_model(fixture_model_dir, "float32", 192, 1).key != same.key
    assert aot.Entry.for_model(fixture_model_dir, "float32", 256, 2).key != same.key


def test_compiled_engine_gives_the_reference_tokens_and_never_compiles_in_a_request(compiled, fixture_model_dir):
    eager = make_engine(fixture_model_dir, False)
    for text in PROMPTS[:3]:
        prompt = compiled.tokenizer.encode(text)
        expected = reference_greedy(eager, prompt, 16)
        for speculative in (False, True):
            assert run(compiled, prompt, max_new_tokens=16, speculative=speculative)[0] == expected, speculative
    # Every width the engine sends goes to a package, whose shapes are dynamic: nothing compiles.
    calls = []
    step = compiled._decode_fn
    runners = dict(step.runners)

    class Counting:
        def __init__(self, kind):
            self.kind = kind

        def boxed_run(self, args):
            calls.append(self.kind)
            return runners[self.kind].boxed_run(args)

    step.runners = {kind: Counting(kind) for kind in runners}
    frames_before = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    scratch = compiled.max_seq - (2 + compiled.max_draft)
    try:
        with torch.inference_mode():
            for width in range(1, compiled.max_draft + 2):
                compiled._forward([5] * width, scratch, width)
            for width in (2, 40, step.segment_max):
                compiled._forward([5] * width, 0, 1)
            for width in (8, step.verify_max):
                compiled._forward([5] * width, 0, width)
    finally:
        step.runners = runners
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == frames_before
    assert calls.count("decode_step") == 1 and calls.count("verify_draft") == compiled.max_draft + 2
    assert calls.count("prefill_segment") == 3


def test_a_second_start_loads_the_packages_without_building(compiled, fixture_model_dir, monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("built again although the cache has the packages")

    monkeypatch.setattr(aot, "build_in_subprocess", no_build)
    t0 = time.perf_counter()
    again = make_engine(fixture_model_dir, "background")  # the server's default: compiled at once
    assert again.compiler.state == "compiled" and again.compile_finished.is_set()
    assert isinstance(again._decode_fn, aot.AotStep) and time.perf_counter() - t0 < 30


def test_a_corrupt_or_foreign_entry_is_rebuilt_never_loaded(compiled, fixture_model_dir, monkeypatch):
    entry = aot.Entry.for_model(fixture_model_dir, "float32", 256, 1)
    package = entry.path / "verify_draft.pt2"
    saved = package.read_bytes()
    try:
        with open(package, "r+b") as f:  # one byte flipped in the middle: same size, other content
            f.seek(len(saved) // 2)
            f.write(bytes([saved[len(saved) // 2] ^ 0xFF]))
        assert entry.state().startswith("stale") and "corrupt" in entry.state()
        builds = []
        monkeypatch.setattr(aot, "build_in_subprocess", lambda e, *a, **k: builds.append(e.key) or restore())

        def restore():  # stands in for the builder: the good package back, as a build would make it
            entry.path.mkdir(exist_ok=True)
            package.write_bytes(saved)
            (entry.path / "manifest.json").write_text(manifest)

        manifest = (entry.path / "manifest.json").read_text()
        again = make_engine(fixture_model_dir, True)
        assert builds == [entry.key] and isinstance(again._decode_fn, aot.AotStep)
    finally:
        package.write_bytes(saved)
    assert entry.state() == "ready"


def test_packages_that_disagree_with_the_model_are_refused(compiled, fixture_model_dir, tmp_path):
    """The same files but other weights in memory (what a stale or mismatched package would compute):
    the probe against the eager model catches it, and the entry is removed (here a copy of it)."""
    other = make_engine(fixture_model_dir, False)
    with torch.no_grad():
        other.model.model.norm.weight.mul_(-1.0)
    entry = aot.Entry.for_model(fixture_model_dir, "float32", 256, 1)
    copy = aot.Entry(entry.key, entry.fields, tmp_path / entry.key)
    shutil.copytree(entry.path, copy.path)
    assert copy.state() == "ready"
    with pytest.raises(aot.StaleEntry, match="differ"):
        aot.load_step(other.model, copy, other.max_seq - 4)
    assert not copy.path.exists() and entry.state() == "ready"


def test_background_build_serves_eager_then_switches(background):
    assert background.state == "compiling" and background.eager and not background.finished_early
    assert background.usable_seq == background.max_seq
    assert background.answered_eager == background.expected
    assert background.finished, "the background build never finished"
    eng = background.engine
    assert eng.compiler.state == "compiled" and isinstance(eng._decode_fn, aot.AotStep)
    for speculative in (False, True):
        assert run(eng, background.prompt, max_new_tokens=16, speculative=speculative)[0] == background.expected


def test_the_steps_costs_are_kept_beside_the_packages_and_read_at_the_next_start(background, compiled,
                                                                                fixture_model_dir, monkeypatch):
    """The hand-over to the built packages measures what their steps cost and keeps it in their
    entry; an engine started on those packages reads it instead of measuring (~0.3 s of a start);
    an unreadable or unsound file is measured again and replaced."""
    from completer.engines.torch import costs as costs_module
    from completer.engines.torch import engine as engine_module

    kept = Path(background.engine.describe()["compiled_engine"]) / "costs-k2.json"
    assert json.loads(kept.read_text())["verification"] == background.engine.ngram_policy.cost
    assert compiled.ngram_policy.cost == background.engine.ngram_policy.cost  # read, not measured again

    measured = []
    real = engine_module.verification_costs
    monkeypatch.setattr(engine_module, "verification_costs", lambda *a, **k: measured.append(1) or real(*a, **k))
    again = make_engine(fixture_model_dir, True)
    assert measured == [] and again.ngram_policy.cost == compiled.ngram_policy.cost
    saved = kept.read_text()
    try:
        for unsound in ("{not json", json.dumps({"verification": [1.0, -2.0, 3.0]}),
                        json.dumps({"verification": [1.0, 2.0]}), json.dumps({"verification": [1.0, 2.0, float("nan")]})):
            kept.write_text(unsound)
            assert costs_module.read_known_costs(kept.parent, 2) is None
            make_engine(fixture_model_dir, True)
            assert costs_module.read_known_costs(kept.parent, 2) is not None, unsound  # measured and kept
        assert len(measured) == 4
    finally:
        kept.write_text(saved)


def test_a_kept_draft_cost_spares_loading_a_draft_that_would_not_be_used(compiled, fixture_model_dir, tmp_path,
                                                                         monkeypatch):
    """The target's own draft: loaded and timed at the first start on the packages, its step cost
    kept; at later starts a kept cost that says it would not pay spares loading it at all (the status
    still says why), and one that says it pays loads it without timing it. A draft the user names is
    always loaded."""
    from completer.engines.torch import drafter as drafter_module

    target = tmp_path / "target"  # the same weights (so the same packages), paired with a draft
    shutil.copytree(fixture_model_dir, target)
    notes_path = target / "completer.json"
    notes = json.loads(notes_path.read_text()) if notes_path.exists() else {}
    notes["draft"] = {"model": str(fixture_model_dir), "acceptance": 0.01}  # it never pays at 1%
    notes_path.write_text(json.dumps(notes))
    entry = Path(compiled.describe()["compiled_engine"])
    kept = entry / "costs-k2.json"
    saved = kept.read_text()
    try:
        first = make_engine(target, True)
        assert first.draft_candidate is not None and not first.draft_status["used"]
        digest = drafter_module.draft_digest(fixture_model_dir)
        assert json.loads(kept.read_text())["drafts"] == {digest: first.draft_candidate.step}

        def no_load(*args, **kwargs):
            raise AssertionError("the draft was loaded")

        monkeypatch.setattr(drafter_module, "load_model", no_load)
        second = make_engine(target, True)
        assert second.draft_candidate is None and second.drafter is None
        assert second.draft_status == first.draft_status  # what it would cost, and that it is not used
        with pytest.raises(AssertionError, match="loaded"):  # named by the user: loaded whatever it costs
            TorchEngine(target, device="cpu", max_seq=256, decode_dtype="none", max_draft=2, num_threads=1,
                        compile=True, draft_model=str(fixture_model_dir))
        monkeypatch.undo()

        # Drafting nearly free: the kept cost says it pays, so it is loaded, and not timed again.
        kept.write_text(json.dumps({"verification": [1.0, 1.01, 1.02], "drafts": {digest: 0.001}}))
        notes["draft"]["acceptance"] = 0.9
        notes_path.write_text(json.dumps(notes))
        monkeypatch.setattr(drafter_module.ModelDrafter, "time_step", no_load)
        paying = make_engine(target, True)
        assert paying.drafter is paying.draft_candidate and paying.draft_candidate.step == 0.001
        prompt = paying.tokenizer.encode(PROMPTS[0])
        assert run(paying, prompt, max_new_tokens=12)[0] == reference_greedy(paying, prompt, 12)
    finally:
        kept.write_text(saved)


def test_a_failed_build_leaves_the_engine_eager_and_says_why(cache_home, fixture_model_dir, monkeypatch):
    monkeypatch.setattr(aot, "build_command", lambda *a, **k: ["false"])
    eng = make_engine(fixture_model_dir, "background", max_seq=160)
    assert eng.compile_finished.wait(60)
    assert eng.compiler.state.startswith("failed: RuntimeError: building the compiled engine failed")
    prompt = eng.tokenizer.encode(PROMPTS[0])
    assert run(eng, prompt, max_new_tokens=8)[0] == reference_greedy(eng, prompt, 8)


def test_the_builder_runs_isolated_from_the_working_directory(fixture_model_dir, monkeypatch):
    cmd = aot.build_command(fixture_model_dir, "float32", 256, 1)
    assert cmd[1] == "-I"  # no module of the editor's working directory or PYTHONPATH is imported
    assert str(Path(compile_module.__file__).resolve().parents[3]) in cmd[3]
    # It runs in the cache directory: `--model ./mine` means the caller's ./mine.
    monkeypatch.chdir(fixture_model_dir.parent)
    relative = aot.build_command(Path(fixture_model_dir.name), "float32", 256, 1)
    assert relative[relative.index("--model") + 1] == str(fixture_model_dir.resolve())


def test_a_new_build_prunes_the_entries_it_supersedes(tmp_path):
    """Same model directory and settings under another key (older weights, code or torch): removed.
    Other settings or another model: kept. A builder's temporary directory: removed once abandoned."""
    fields = {"dtype": "float32", "max_seq": 2048, "threads": 1}
    kept = aot.Entry("new", fields, tmp_path / "new")

    def entry(name, model_dir="/models/a", **changes):
        (tmp_path / name).mkdir()
        manifest = {"key": name, "model_dir": model_dir, "fields": {**fields, **changes}}
        (tmp_path / name / "manifest.json").write_text(json.dumps(manifest))
        (tmp_path / f"{name}.log").write_text("built")
        return tmp_path / name

    entry("new")
    older = entry("older")
    other_threads = entry("other-threads", threads=2)
    other_model = entry("other-model", model_dir="/models/b")
    fresh_tmp, stale_tmp = tmp_path / ".new-abc", tmp_path / ".older-def"
    fresh_tmp.mkdir()
    stale_tmp.mkdir()
    past = time.time() - aot.BUILD_TIMEOUT_S - 60
    os.utime(stale_tmp, (past, past))
    # a refused entry's lock and log (its directory removed), one long ago and one just now
    orphans = [tmp_path / "refused.lock", tmp_path / "refused.log", tmp_path / "building.lock"]
    for f in orphans:
        f.write_text("")
    for f in orphans[:2]:
        os.utime(f, (past, past))
    assert sorted(p.name for p in aot.prune(tmp_path, kept, Path("/models/a"))) == [".older-def", "older"]
    assert not older.exists() and not (tmp_path / "older.log").exists() and not stale_tmp.exists()
    assert other_threads.exists() and other_model.exists() and fresh_tmp.exists() and kept.path.exists()
    assert [f.exists() for f in orphans] == [False, False, True] and (tmp_path / "new.log").exists()


class _Perturbed(aot.AotStep):
    """A loaded package stand-in: the eager model's logits moved by `delta` times their largest size."""

    def __init__(self, model, delta: float):
        self.model, self.delta = model, delta

    def __call__(self, idx, start_pos, num_logits):
        out = self.model(idx, start_pos=start_pos, num_logits=num_logits)
        return out + self.delta * out.abs().max()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_probe_allows_16bit_rounding_but_not_another_computation(fixture_model_dir, dtype):
    """Fused 16-bit kernels round differently from eager ones (bf16 packages differed by 0.19 in a
    logit and were always refused before); fp32 stays strict, and neither passes a package that
    computes something else."""
    from completer.engines.torch.model import load_model

    model = load_model(fixture_model_dir, dtype=dtype)
    model.prepare_for_inference(None)
    model.setup_cache(64)
    assert _Perturbed(model, 0.0).probe(56) == 0.0
    assert (_Perturbed(model, 0.01).probe(56) <= 1.0) == (dtype == torch.bfloat16)
    assert _Perturbed(model, 0.5).probe(56) > 1.0


def test_a_lock_held_by_a_builder_is_not_removed(tmp_path):
    """An old lock file (locks outlive builds) that a builder holds right now stays."""
    import fcntl

    lock = tmp_path / "building.lock"
    past = time.time() - aot.BUILD_TIMEOUT_S - 60
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        os.utime(lock, (past, past))
        aot.prune(tmp_path, aot.Entry("new", {}, tmp_path / "new"), Path("/models/a"))
        assert lock.exists()
    aot.prune(tmp_path, aot.Entry("new", {}, tmp_path / "new"), Path("/models/a"))
    assert not lock.exists()
