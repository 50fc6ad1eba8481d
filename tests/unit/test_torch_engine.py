"""The torch engine on the fixture model: greedy exactness with speculation and caching, stops,
cancellation, token healing. Behaviour only; quality is not the fixture's job."""

import threading
import time

import pytest
import torch

from completer.engines.contract import GenerationRequest, StopRules
from completer.engines.model_dirs import resolve_model
from completer.engines.shaper import utf8_complete_len
from completer.engines.torch import engine as torch_engine
from completer.engines.torch.compile import StaticStep, static_widths
from completer.engines.torch.engine import TorchEngine, default_cpu_threads


@pytest.fixture(scope="module")
def engine(fixture_model_dir):
    # fp32 throughout: greedy output is then exactly comparable with a plain full-sequence forward.
    return TorchEngine(fixture_model_dir, device="cpu", max_seq=512, decode_dtype="none", edit_reuse=False)


@pytest.fixture(scope="module")
def bf16_engine(fixture_model_dir):
    return TorchEngine(fixture_model_dir, device="cpu", max_seq=512, decode_dtype="bfloat16", edit_reuse=False)


def reference_greedy(engine, prompt, n):
    """Greedy decoding the slow obvious way: full forward over the whole sequence every step."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            logits = engine.model(torch.tensor([ids]))
            ids.append(int(logits[0, -1].argmax()))
    return ids[len(prompt):]


def run(engine, prompt, **kw):
    kw.setdefault("stop", StopRules(max_lines=0))
    stream = engine.generate(GenerationRequest(prompt_ids=tuple(prompt), **kw))
    ids = [t for d in stream for t in d.token_ids]
    return ids, stream.stats


PROMPTS = [
    "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return",
    "import os\nimport sys\n\nfor name in os.listdir(path):\n    print(name)\nfor name in",
    "x = [1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2",
    "class A:\n    pass\n",
]


@pytest.mark.parametrize("text", PROMPTS)
def test_speculative_and_cached_output_is_exactly_greedy(engine, text):
    prompt = engine.tokenizer.encode(text)
    expected = reference_greedy(engine, prompt, 24)
    for speculative in (False, True):
        for use_cache in (False, True):
            ids, stats = run(engine, prompt, max_new_tokens=24, speculative=speculative, use_cache=use_cache)
            assert ids == expected, (speculative, use_cache)
            assert stats.finish_reason == "max_tokens"
            assert stats.decode_tokens == 24
            if not speculative:
                assert stats.drafted_tokens == 0


@pytest.mark.parametrize("text", PROMPTS)
def test_bf16_decode_speculation_equals_bf16_decode_without(bf16_engine, text):
    """With bf16 decode weights every decode-phase call (1 token or 1 + draft) uses the same weights,
    so speculation still changes nothing in the output."""
    prompt = bf16_engine.tokenizer.encode(text)
    plain, _ = run(bf16_engine, prompt, max_new_tokens=24, speculative=False)
    spec, _ = run(bf16_engine, prompt, max_new_tokens=24, speculative=True)
    assert spec == plain


def test_forward_static_equals_forward_and_ignores_stale_entries(fixture_model_dir):
    """The fixed-shape call (CUDA graphs) attends over the whole cache under a mask: entries past the
    query, written by an earlier longer step, must get no weight."""
    eng = TorchEngine(fixture_model_dir, device="cpu", max_seq=128, decode_dtype="none", edit_reuse=False)
    model = eng.model
    prompt = torch.tensor([eng.tokenizer.encode(PROMPTS[0])])
    n = prompt.shape[1]
    with torch.inference_mode():
        model(prompt, start_pos=0, num_logits=1)
        for width in (1, 3):
            idx = torch.tensor([[5, 17, 40][:width]])
            exact = model(idx, start_pos=n, num_logits=width)
            model.forward_static(torch.tensor([[9] * 6]), torch.arange(n + width, n + width + 6))  # stale
            static = model.forward_static(idx, torch.arange(n, n + width))
            torch.testing.assert_close(static, exact, rtol=1e-5, atol=1e-5)


def static_engine(model_dir, **kw):
    """An engine whose decode phase runs the fixed-shape step as on CUDA (here forward_static uncompiled):
    the decode widths exact, prefill segments and scored candidates padded to the buckets."""
    eng = TorchEngine(model_dir, device="cpu", max_seq=512, decode_dtype="none", **kw)
    eng.compiler.pad_position = eng.max_seq - 1
    eng._decode_fn = StaticStep(eng.model.forward_static, "cpu", static_widths(eng.max_draft, eng.max_seq),
                                eng.compiler.pad_position)
    eng.static_decode = True
    return eng


def test_static_decode_path_is_exactly_greedy(fixture_model_dir):
    """Through the fixed-shape step, prefill (segments padded to the buckets) and decoding give the
    reference tokens, with speculation on and off, from a cold slot and after edits that reuse K/V."""
    eng = static_engine(fixture_model_dir, edit_reuse=True)
    plain = TorchEngine(fixture_model_dir, device="cpu", max_seq=512, decode_dtype="none", edit_reuse=False)
    assert eng._decode_fn.widths == (1, 2, 3, 4, 5, 16, 64, 256) and eng.compiler.usable_seq() == 511
    for text in PROMPTS[:3]:
        prompt = eng.tokenizer.encode(text)
        expected = reference_greedy(plain, prompt, 24)
        for speculative in (False, True):
            assert run(eng, prompt, max_new_tokens=24, speculative=speculative)[0] == expected, speculative
        edited = eng.tokenizer.encode("# a comment on top\n" + text)  # the old K/V shifted, the new computed
        assert run(eng, edited, max_new_tokens=24)[0] == reference_greedy(plain, edited, 24)


def test_static_step_pads_to_a_bucket_without_touching_kept_positions(fixture_model_dir):
    """A call shorter than its graph is padded at the pad position only: K/V past the call's tokens,
    which a slot may still hold (a shifted chunk), stay as they were; the rows kept are exact."""
    eng = static_engine(fixture_model_dir)
    model, step = eng.model, eng._decode_fn
    assert step.width_for(6) == 16 and step.width_for(17) == 64 and step.width_for(5) == 5
    ids = torch.tensor([eng.tokenizer.encode(PROMPTS[0])[:40]])
    with torch.inference_mode():
        model(ids, start_pos=0, num_logits=1)
        kept = [(c.k[:, :, 10:40].clone(), c.v[:, :, 10:40].clone()) for c in model.kv_caches()]
        exact = model(ids[:, :10], start_pos=0, num_logits=3)
        padded = step(ids[:, :10], start_pos=0, num_logits=3)  # 10 tokens in the 16-wide graph
        torch.testing.assert_close(padded, exact, rtol=1e-5, atol=1e-5)
        for c, (k, v) in zip(model.kv_caches(), kept):
            assert torch.equal(c.k[:, :, 10:40], k) and torch.equal(c.v[:, :, 10:40], v)
    with pytest.raises(StopIteration):
        step.width_for(257)  # past the widest graph: the engine runs it eager
    assert eng._forward([5] * 300, 0, 1).shape[0] == 1


def test_static_compiled_decode_gives_the_reference_tokens(fixture_model_dir):
    """torch.compile of the fixed-shape decode graphs CUDA captures (compiled here without capture:
    no GPU in CI): the same tokens as the reference, with speculation on and off, and no recompile for
    any decode width once started. (The CPU's compiled engine: test_compiled_engine.py.)"""
    eng = TorchEngine(fixture_model_dir, device="cpu", max_seq=256, decode_dtype="none", edit_reuse=False,
                      max_draft=2)
    cases = [(p, reference_greedy(eng, p, 16)) for p in map(eng.tokenizer.encode, PROMPTS[:2])]
    eng._compile_now(static=True)
    assert eng.static_decode and eng.describe()["compiled"]
    scratch = eng.max_seq - (2 + eng.max_draft)
    with torch._dynamo.config.patch(error_on_recompile=True), torch.inference_mode():
        for width in range(1, eng.max_draft + 2):
            for logits in (1, width):
                eng._forward([5] * width, scratch, logits)
    for prompt, expected in cases:
        for speculative in (False, True):
            assert run(eng, prompt, max_new_tokens=16, speculative=speculative)[0] == expected, speculative


def test_unknown_compile_mode_is_refused(fixture_model_dir):
    with pytest.raises(ValueError, match="compile mode"):
        TorchEngine(fixture_model_dir, device="cpu", max_seq=64, compile="fast")


@pytest.mark.parametrize("cores, torch_default, expected", [(2, 2, 1), (1, 1, 1), (16, 8, 8), (4, 8, 3)])
def test_default_cpu_threads_leave_one_core_free(monkeypatch, cores, torch_default, expected):
    monkeypatch.setattr(torch_engine.os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    monkeypatch.setattr(torch_engine, "TORCH_DEFAULT_THREADS", torch_default)
    assert default_cpu_threads() == expected


def test_engine_sets_its_threads_and_widens_them_for_long_prefills_only(fixture_model_dir):
    before = torch.get_num_threads()
    try:
        eng = TorchEngine(fixture_model_dir, device="cpu", max_seq=512, num_threads=1, edit_reuse=False)
        info = eng.describe()
        assert torch.get_num_threads() == 1 and info["threads"] == info["long_prefill_threads"] == 1
        eng.long_prefill_threads = 2  # what the default gives on two or more cores
        seen = []
        forward = eng.model.forward
        eng.model.forward = lambda *a, **k: seen.append(torch.get_num_threads()) or forward(*a, **k)
        prompt = list(range(10, 10 + torch_engine.COMPILED_SEGMENT_MAX + 20))
        run(eng, prompt, max_new_tokens=2)
        assert seen[0] == 2 and set(seen[1:]) == {1}  # the long prefill, then one-token steps
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_speculation_saves_forward_passes_on_repetitive_text(engine):
    prompt = engine.tokenizer.encode(PROMPTS[2])
    _, plain = run(engine, prompt, max_new_tokens=32, speculative=False)
    _, spec = run(engine, prompt, max_new_tokens=32, speculative=True)
    assert spec.drafted_tokens > 0 and spec.accepted_tokens > 0
    assert spec.forward_passes < plain.forward_passes


def test_prefix_reuse_prefills_only_new_tokens(engine):
    base = engine.tokenizer.encode("def area(r):\n    return 3.14 * r * r\n\ndef perimeter(r):\n    return")
    run(engine, base, max_new_tokens=4)
    _, stats = run(engine, base + engine.tokenizer.encode(" 2"), max_new_tokens=4)
    assert stats.cached_tokens == len(base)
    assert stats.prefill_tokens == stats.prompt_tokens - len(base)
    _, again = run(engine, base, max_new_tokens=4)  # identical prompt: one token is recomputed for logits
    assert again.cached_tokens == len(base) - 1 and again.prefill_tokens == 1
    _, off = run(engine, base, max_new_tokens=4, use_cache=False)
    assert off.cached_tokens == 0 and off.prefill_tokens == len(base)


def test_generated_tokens_are_cached_for_the_next_keystroke(engine):
    prompt = engine.tokenizer.encode("for i in range(10):\n    print(")
    ids, _ = run(engine, prompt, max_new_tokens=6, speculative=False)
    # The user types the first two suggested tokens: their K/V is already in the cache.
    _, stats = run(engine, prompt + ids[:2], max_new_tokens=2)
    assert stats.cached_tokens >= len(prompt) + 1


def test_stop_token_and_line_limit(engine):
    prompt = engine.tokenizer.encode(PROMPTS[0])
    ids, _ = run(engine, prompt, max_new_tokens=8, speculative=False)
    first = ids[0]
    stopped, stats = run(engine, prompt, max_new_tokens=8, stop=StopRules(stop_token_ids=frozenset({first})))
    assert stopped == [] and stats.finish_reason == "stop_token"
    stream = engine.generate(GenerationRequest(prompt_ids=tuple(prompt), max_new_tokens=64,
                                               stop=StopRules(max_lines=1)))
    text = "".join(d.text for d in stream)
    assert "\n" not in text


def test_cancel_takes_effect_before_the_next_step(engine):
    prompt = engine.tokenizer.encode(PROMPTS[1])
    cancel = threading.Event()
    stream = engine.generate(GenerationRequest(prompt_ids=tuple(prompt), max_new_tokens=200,
                                               stop=StopRules(max_lines=0), speculative=False), cancel)
    passes_at_cancel = None
    for _ in stream:
        if passes_at_cancel is None:
            passes_at_cancel = stream.stats.forward_passes
            cancel.set()
    assert stream.stats.finish_reason == "cancelled"
    assert stream.stats.forward_passes == passes_at_cancel


def test_cancel_from_another_thread(engine):
    prompt = engine.tokenizer.encode(PROMPTS[1])
    cancel = threading.Event()
    stream = engine.generate(GenerationRequest(prompt_ids=tuple(prompt), max_new_tokens=400,
                                               stop=StopRules(max_lines=0)), cancel)
    worker = threading.Thread(target=lambda: [None for _ in stream])
    worker.start()
    cancel.set()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert stream.stats.finish_reason in ("cancelled", "max_tokens")
    # the engine is immediately usable again
    ids, stats = run(engine, prompt, max_new_tokens=3)
    assert len(ids) == 3


def test_deadline_in_the_past_stops_after_the_first_token(engine):
    prompt = engine.tokenizer.encode(PROMPTS[0])
    ids, stats = run(engine, prompt, max_new_tokens=50, deadline_s=0.0)
    assert stats.finish_reason == "deadline"
    assert len(ids) >= 1 and stats.forward_passes == 1


def test_token_healing_regenerates_the_backed_up_text(engine):
    tok = engine.tokenizer
    prompt = tok.encode("def f(items):\n    for item in items:\n        ")
    stream = engine.generate(GenerationRequest(prompt_ids=tuple(prompt), max_new_tokens=6, heal_prefix=b"pri",
                                               stop=StopRules(max_lines=0)))
    deltas = list(stream)
    ids = [t for d in deltas for t in d.token_ids]
    full = tok.decode_bytes(ids)
    assert full.startswith(b"pri")
    visible = "".join(d.text for d in deltas)  # the backed-up text is not shown again
    rest = full[3:]
    assert visible == rest[:utf8_complete_len(rest)].decode("utf-8")


def test_prompt_longer_than_the_cache_is_refused(engine):
    with pytest.raises(ValueError, match="does not fit"):
        run(engine, [5] * 600, max_new_tokens=4)


def test_block_pool_restores_another_prompt_exactly(fixture_model_dir):
    eng = TorchEngine(fixture_model_dir, device="cpu", max_seq=512, decode_dtype="none", cache_mb=1, block_size=8,
                      edit_reuse=False)
    tok = eng.tokenizer
    a = tok.encode(PROMPTS[0] * 6)
    b = tok.encode(PROMPTS[1] * 6)
    cold, cold_stats = run(eng, a, max_new_tokens=8)
    run(eng, b, max_new_tokens=8)  # the slot now holds b; a's blocks live in the pool
    again, stats = run(eng, a, max_new_tokens=8)
    assert again == cold
    assert stats.restored_tokens == (len(a) - 1) // 8 * 8 and stats.cached_tokens == stats.restored_tokens
    assert stats.prefill_tokens == len(a) - stats.cached_tokens
    _, b_again = run(eng, b, max_new_tokens=8, session_key="other")
    assert b_again.restored_tokens > 0


def test_block_pool_is_bounded_and_evicts(fixture_model_dir):
    eng = TorchEngine(fixture_model_dir, device="cpu", max_seq=512, decode_dtype="none", cache_mb=0.05, block_size=8,
                      edit_reuse=False)
    pool_bytes = eng.pool.k.numel() * eng.pool.k.element_size() * 2
    assert pool_bytes <= 0.05 * 2**20
    blocks = eng.pool.index.num_blocks
    for text in PROMPTS:
        ids = eng.tokenizer.encode(text * 8)
        out, _ = run(eng, ids, max_new_tokens=6)
        assert out == reference_greedy(eng, ids, 6)
    assert eng.pool.index.used_blocks <= blocks and eng.pool.index.evictions > 0


def test_moving_chunks_reads_sources_before_writing_and_rerotates_keys(fixture_model_dir):
    from completer.engines.torch.model import rerotate_keys

    eng = TorchEngine(fixture_model_dir, device="cpu", max_seq=64, decode_dtype="none")
    cache = eng.model.kv_caches()[0]
    cache.k.copy_(torch.randn_like(cache.k))
    cache.v.copy_(torch.randn_like(cache.v))
    k0, v0 = cache.k.clone(), cache.v.clone()
    eng.slot.move_chunks([(4, 7, 10), (20, 18, 5)])  # overlapping shift right, then a shift left
    cfg = eng.model.config
    torch.testing.assert_close(cache.k[0, :, 7:17], rerotate_keys(k0[0, :, 4:14], cfg, 3))
    torch.testing.assert_close(cache.v[0, :, 7:17], v0[0, :, 4:14])
    torch.testing.assert_close(cache.k[0, :, 18:23], rerotate_keys(k0[0, :, 20:25], cfg, -2))
    torch.testing.assert_close(cache.v[0, :, 18:23], v0[0, :, 20:25])


def test_edit_reuse_computes_only_the_edited_region(fixture_model_dir):
    eng = TorchEngine(fixture_model_dir, device="cpu", max_seq=512, decode_dtype="none", edit_reuse=True)
    tok = eng.tokenizer
    above, below = tok.encode(PROMPTS[0] * 3), tok.encode(PROMPTS[1] * 3)
    first = above + below
    run(eng, first, max_new_tokens=2)
    inserted = tok.encode("    y = compute(x)\n")
    second = above + inserted + below  # a line typed above the suffix: the suffix only shifts
    _, stats = run(eng, second, max_new_tokens=2)
    assert stats.shifted_tokens >= len(below) - 2
    assert stats.prefill_tokens <= len(inserted) + 3
    assert stats.cached_tokens + stats.prefill_tokens == len(second)
    assert eng.slot.cached_ids[:len(second)] == second
    _, off = run(eng, second, max_new_tokens=2, edit_reuse=False)  # identical prompt: plain prefix reuse
    assert off.shifted_tokens == 0 and off.prefill_tokens == 1


@pytest.fixture(scope="module")
def drafted_engine():
    from completer.engines.torch.decoding import DraftPolicy

    eng = TorchEngine(resolve_model("embedded"), device="cpu", decode_dtype="none", edit_reuse=False,
                      draft_model="embedded-draft")
    # Make drafting always worth it here, whatever this machine's step costs, so the test exercises it.
    eng.drafter.policy = DraftPolicy([1.0] * (eng.max_draft + 1), prior_rate=0.9)
    eng.ngram_policy = DraftPolicy([1e9] * (eng.max_draft + 1))  # n-gram drafts never pay: model drafts
    return eng


@pytest.mark.parametrize("text", PROMPTS)
def test_draft_model_speculation_is_exactly_greedy(drafted_engine, text):
    eng = drafted_engine
    prompt = eng.tokenizer.encode(text)
    plain, _ = run(eng, prompt, max_new_tokens=20, speculative=False)
    spec, stats = run(eng, prompt, max_new_tokens=20, speculative=True)
    assert spec == plain == reference_greedy(eng, prompt, 20)
    assert stats.drafted_tokens > 0
    assert stats.forward_passes < 20 or stats.accepted_tokens == 0


def test_sampling_is_reproducible_and_unchanged_by_speculation(drafted_engine):
    prompt = drafted_engine.tokenizer.encode(PROMPTS[1])
    plain, _ = run(drafted_engine, prompt, max_new_tokens=16, temperature=0.8, seed=3, speculative=False)
    spec, stats = run(drafted_engine, prompt, max_new_tokens=16, temperature=0.8, seed=3)
    again, _ = run(drafted_engine, prompt, max_new_tokens=16, temperature=0.8, seed=3)
    assert spec == plain == again and len(plain) == 16 and stats.drafted_tokens > 0
    others = {tuple(run(drafted_engine, prompt, max_new_tokens=16, temperature=0.8, seed=s)[0]) for s in range(4, 9)}
    assert len(others | {tuple(plain)}) > 1  # seeds matter


def test_draft_model_policy_is_measured_against_the_target_step(drafted_engine):
    """What a background compile calls once the target's step is faster: drafting k tokens costs
    the verification plus k draft steps, so the costs grow with k and exceed the target's alone.
    It must leave both models' slots usable (it writes K/V at the scratch positions)."""
    eng = drafted_engine
    target = [1.0, 1.5, 1.7, 1.9, 2.1][:eng.max_draft + 1]
    policy = eng._drafter_policy(target)
    assert all(c > t for c, t in zip(policy.cost[1:], target[1:]))
    assert policy.cost == sorted(policy.cost)
    prompt = eng.tokenizer.encode(PROMPTS[0])
    assert run(eng, prompt, max_new_tokens=12)[0] == reference_greedy(eng, prompt, 12)


def test_the_targets_own_draft_is_used_only_where_its_measured_cost_pays(tmp_path):
    """auto (the default) loads the draft the target's completer.json pairs with it and keeps it
    only while drafting pays at the pair's acceptance; a draft the user names is always kept."""
    import json
    import shutil

    from completer.engines.torch.decoding import DraftPolicy

    target = tmp_path / "target"
    shutil.copytree(resolve_model("embedded"), target)
    notes = json.loads((target / "completer.json").read_text())
    notes["draft"] = {"model": "embedded-draft", "acceptance": 0.5}
    (target / "completer.json").write_text(json.dumps(notes))
    eng = TorchEngine(target, device="cpu", max_seq=512, decode_dtype="none")
    assert eng.draft_candidate is not None and eng.draft_candidate.model_dir.name == "embedded-draft"
    policy = eng.draft_candidate.policy
    # Each drafted token adds one draft step to the verification (at least a plain step). Not
    # "increasing in k": the verification costs are measured, and on a shared CPU neighbours can swap.
    step = eng.draft_candidate.step
    assert policy.prior_rate == 0.5 and step > 0 and all(c >= 1.0 + k * step for k, c in enumerate(policy.cost))
    status = eng.describe()["draft"]
    pays_from = policy.break_even(eng.max_draft)
    assert status["used"] == (pays_from is not None and pays_from <= 0.5) == (eng.drafter is not None)
    assert not status["given"] and status["model"] == "embedded-draft"
    # Where drafting is nearly free (a GPU), 50% acceptance pays; where it is dear, it does not.
    eng.ngram_policy = DraftPolicy([1e9] * (eng.max_draft + 1))  # every draft below is the model's
    eng.draft_candidate.policy = DraftPolicy([1.0, 1.05, 1.1, 1.15, 1.2][:eng.max_draft + 1], prior_rate=0.5)
    eng._decide_draft()
    assert eng.drafter is eng.draft_candidate and eng.describe()["draft"]["used"]
    prompt = eng.tokenizer.encode(PROMPTS[1])
    ids, stats = run(eng, prompt, max_new_tokens=16)
    assert ids == reference_greedy(eng, prompt, 16) and stats.drafted_tokens > 0
    eng.draft_candidate.policy = DraftPolicy([1.0, 2.0, 2.6, 3.2, 3.8][:eng.max_draft + 1], prior_rate=0.5)
    eng._decide_draft()
    assert eng.drafter is None and eng.describe()["draft"]["pays_from"] > 0.5
    assert run(eng, prompt, max_new_tokens=16)[1].drafted_tokens == 0

    given = TorchEngine(target, device="cpu", max_seq=512, decode_dtype="none", draft_model="embedded-draft")
    given.draft_candidate.policy = DraftPolicy([1.0, 3.0, 4.0, 5.0, 6.0][:given.max_draft + 1])
    given._decide_draft()
    assert given.drafter is given.draft_candidate and given.draft_choice.acceptance == 0.5  # the pair's rate
    off = TorchEngine(target, device="cpu", max_seq=512, decode_dtype="none", draft_model="none")
    assert off.draft_candidate is None and off.drafter is None and off.describe()["draft"] is None


def test_a_paired_draft_that_cannot_load_leaves_the_engine_serving(tmp_path, fixture_model_dir):
    import json
    import shutil

    target = tmp_path / "target"
    shutil.copytree(fixture_model_dir, target)
    for draft in ("no-such-draft", "embedded-draft"):  # missing; another tokenizer than the fixture's
        (target / "completer.json").write_text(json.dumps({"draft": {"model": draft, "acceptance": 0.5}}))
        eng = TorchEngine(target, device="cpu", max_seq=512, decode_dtype="none")
        assert eng.drafter is None and eng.describe()["draft"] is None
        prompt = eng.tokenizer.encode(PROMPTS[0])
        assert run(eng, prompt, max_new_tokens=8)[0] == reference_greedy(eng, prompt, 8)
    with pytest.raises(ValueError, match="tokenizer"):  # named by the user: said, not skipped
        TorchEngine(target, device="cpu", max_seq=512, draft_model="embedded-draft")


def test_choose_draft_reads_the_pairing(tmp_path):
    import json

    from completer.engines.torch.drafter import DEFAULT_ACCEPTANCE, DraftChoice, choose_draft

    assert choose_draft(tmp_path, None) == DraftChoice(None)  # no completer.json: no draft
    assert choose_draft(tmp_path, "embedded-draft") == DraftChoice("embedded-draft", True, DEFAULT_ACCEPTANCE)
    (tmp_path / "draft").mkdir()
    (tmp_path / "completer.json").write_text(json.dumps({"draft": {"model": "draft", "acceptance": 0.42}}))
    beside = str((tmp_path / "draft").resolve())
    assert choose_draft(tmp_path, None) == choose_draft(tmp_path, "auto") == DraftChoice(beside, False, 0.42)
    assert choose_draft(tmp_path, "none") == choose_draft(tmp_path, "off") == DraftChoice(None)
    assert choose_draft(tmp_path, str(tmp_path / "draft")) == DraftChoice(str(tmp_path / "draft"), True, 0.42)
    (tmp_path / "completer.json").write_text(json.dumps({"draft": {"model": "draft", "acceptance": 7}}))
    assert choose_draft(tmp_path, None).acceptance == DEFAULT_ACCEPTANCE  # not a rate: the default prior
    (tmp_path / "completer.json").write_text("[not, json")
    assert choose_draft(tmp_path, None) == DraftChoice(None)


def test_draft_model_must_share_the_tokenizer():
    with pytest.raises(ValueError, match="tokenizer"):
        TorchEngine(resolve_model("embedded"), device="cpu", draft_model="fixture")


def test_a_warm_up_prefills_in_pieces_and_a_cancel_keeps_what_it_computed(fixture_model_dir, monkeypatch):
    """Engine.prefill: the keystroke that cancels a warm-up waits one piece, not the whole prefill,
    and the next request computes only what the warm-up had not, with the same greedy output."""
    monkeypatch.setattr(torch_engine, "WARM_PIECE", 16)
    eng = TorchEngine(fixture_model_dir, device="cpu", max_seq=512, decode_dtype="none", cache_mb=1, block_size=8,
                      edit_reuse=False)
    prompt = eng.tokenizer.encode(PROMPTS[0] * 4 + PROMPTS[1])
    assert len(prompt) > 64
    request = GenerationRequest(prompt_ids=tuple(prompt), session_key="doc")
    assert eng.slot.plan(prompt, request).computed == len(prompt)  # nothing cached yet

    cancel = threading.Event()
    forward = eng._forward
    widths = []

    def forward_then_cancel(ids, start, num_logits):  # the keystroke arrives during the third piece
        widths.append(len(ids))
        if len(widths) == 3:
            cancel.set()
        return forward(ids, start, num_logits)

    monkeypatch.setattr(eng, "_forward", forward_then_cancel)
    stats = eng.prefill(request, cancel)
    monkeypatch.setattr(eng, "_forward", forward)
    assert stats.finish_reason == "cancelled" and widths == [16, 16, 16]
    assert eng.cached_ids == prompt[:48] and stats.prefill_tokens == 48
    assert eng.slot.plan(prompt, request).computed == len(prompt) - 48

    done = eng.prefill(request)  # the next warm-up goes on from there and runs to the end
    assert done.finish_reason == "prefilled" and done.prefill_tokens == len(prompt) - 48
    assert eng.slot.plan(prompt, request).computed == 1  # a generation recomputes the last token for its logits
    ids, stats = run(eng, prompt, max_new_tokens=12, session_key="doc", speculative=False)
    assert stats.prefill_tokens == 1
    assert ids == reference_greedy(eng, prompt, len(ids))


def test_max_prefill_answers_cold_at_once_and_touches_nothing(fixture_model_dir):
    """GenerationRequest.max_prefill (the completer's cold path): a request that would prefill more
    generates nothing and leaves the slot and the pool as they were; one within it runs as always."""
    eng = TorchEngine(fixture_model_dir, device="cpu", max_seq=512, decode_dtype="none", cache_mb=1, block_size=8,
                      edit_reuse=False)
    prompt = eng.tokenizer.encode(PROMPTS[0] * 4 + PROMPTS[1])
    run(eng, prompt[:40], max_new_tokens=4, session_key="doc")
    cached, blocks = list(eng.cached_ids), eng.pool.index.used_blocks
    need = len(prompt) - 40  # the slot holds the first 40

    ids, stats = run(eng, prompt, max_new_tokens=4, session_key="doc", max_prefill=need - 1)
    assert ids == [] and stats.finish_reason == "cold" and stats.prefill_tokens == 0
    assert eng.cached_ids == cached and eng.pool.index.used_blocks == blocks

    ids, stats = run(eng, prompt, max_new_tokens=4, session_key="doc", max_prefill=need, speculative=False)
    assert stats.finish_reason != "cold" and stats.prefill_tokens == need
    assert ids == reference_greedy(eng, prompt, len(ids))


def test_a_cancelled_warm_up_leaves_its_blocks_in_the_pool(fixture_model_dir, monkeypatch):
    monkeypatch.setattr(torch_engine, "WARM_PIECE", 16)
    eng = TorchEngine(fixture_model_dir, device="cpu", max_seq=512, decode_dtype="none", cache_mb=1, block_size=8,
                      edit_reuse=False)
    tok = eng.tokenizer
    prompt = tok.encode(PROMPTS[0] * 4 + PROMPTS[1])
    cancel = threading.Event()
    forward = eng._forward

    def forward_then_cancel(ids, start, num_logits):
        cancel.set()
        return forward(ids, start, num_logits)

    monkeypatch.setattr(eng, "_forward", forward_then_cancel)
    eng.prefill(GenerationRequest(prompt_ids=tuple(prompt), session_key="doc"), cancel)
    monkeypatch.setattr(eng, "_forward", forward)
    run(eng, tok.encode(PROMPTS[2] * 3), max_new_tokens=2, session_key="other")  # another document takes the slot
    _, stats = run(eng, prompt, max_new_tokens=2, session_key="doc")
    assert stats.restored_tokens == 16 and stats.prefill_tokens == len(prompt) - 16
