"""The lmdeploy backend against a strict fake of LMDeploy 0.18.0's AsyncEngine API (tests/fakes/lmdeploy):
the engine config it builds, preprocess(input_ids, do_preprocess=False) + generate(stream_response=True),
greedy output equal to the torch backend's, stop rules on our side, cancellation of the consuming task,
and what it refuses at start-up (speculation, StarCoder2). Tests through the fake say `api_fake`."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time

import pytest

from completer.engines.contract import BackendUnavailableError, GenerationRequest, StopRules
from completer.engines.loading import create_engine
from tests.fakes import hide_backends
from tests.fakes.backend_harness import (
    MAX_SEQ,
    MODEL,
    PROMPTS,
    builder,
    fake_package,
    only,
    reference_engine,
    steps_after,
)
from tests.fakes.backend_harness import run as harness_run

BLOCK = 16
EOS = 0  # the embedded model's eos_token_id


@pytest.fixture(scope="module")
def fake():
    yield from fake_package("lmdeploy")


@pytest.fixture(scope="module")
def engine(fake):
    from completer.engines.lmdeploy import LmdeployEngine

    eng = LmdeployEngine(MODEL, max_seq=MAX_SEQ, block_size=BLOCK)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def reference():
    return reference_engine()


@pytest.fixture
def calls(fake):
    fake.CALLS.clear()
    return fake


@pytest.fixture
def make(fake):
    from completer.engines.lmdeploy import LmdeployEngine

    yield from builder(LmdeployEngine)


def run(engine, prompt, cancel=None, **kw):
    kw.setdefault("stop", StopRules(stop_token_ids=frozenset({EOS}), max_lines=0))
    return harness_run(engine, prompt, cancel, **kw)


def greedy(reference, prompt, n):
    ids, _, _ = run(reference, prompt, max_new_tokens=n, speculative=False)
    return ids


def steps_after_cancel(fake, session_id) -> int:
    """Decode steps the fake ran for this session after the cancel (must be 0)."""
    return steps_after(fake, "session_id", session_id, "cancel")


def model_with_architecture(tmp_path, arch: str):
    shutil.copytree(MODEL, tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    config["architectures"] = [arch]
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    return tmp_path / "model"


# -- start-up -------------------------------------------------------------------------------------

def test_missing_lmdeploy_raises_backend_unavailable(monkeypatch):
    hide_backends(monkeypatch)
    from completer.engines.lmdeploy import LmdeployEngine

    with pytest.raises(BackendUnavailableError, match=r"lmdeploy is not installed: `pip install lmdeploy==0\.18\.0`"):
        LmdeployEngine(MODEL)
    with pytest.raises(BackendUnavailableError, match="NVIDIA GPU"):
        create_engine("lmdeploy", MODEL)


def test_lmdeploy_api_fake_turbomind_config_and_loop(calls, make):
    make()
    config = only(calls, "TurbomindEngineConfig")
    assert (config["dtype"], config["session_len"], config["enable_prefix_caching"]) == ("auto", 2048, True)
    assert config["cache_block_seq_len"] == 64  # block_size not given: LMDeploy's default
    engine = only(calls, "AsyncEngine")
    assert engine["model_path"] == str(MODEL) and engine["backend"] == "turbomind"
    assert engine["speculative_config"] is None and type(engine["backend_config"]).__name__ == "TurbomindEngineConfig"
    assert only(calls, "start_loop") == {"use_async_api": True}


def test_lmdeploy_api_fake_pytorch_engine_config(calls, make):
    eng = make(engine="pytorch", block_size=32, dtype="bf16", max_seq=1024)
    config = only(calls, "PytorchEngineConfig")
    assert (config["dtype"], config["session_len"], config["block_size"], config["enable_prefix_caching"]) == \
        ("bfloat16", 1024, 32, True)
    assert only(calls, "AsyncEngine")["backend"] == "pytorch"
    d = eng.describe()
    assert d["engine"] == "pytorch" and d["kv_cache"] == {"prefix_caching": True, "block_size": 32}
    assert d["cuda_graphs"] is True and d["max_seq"] == 1024


def test_lmdeploy_api_fake_backend_options_override_engine_config_fields(calls, make):
    eng = make(backend_options={"cache_max_entry_count": 0.5, "quant_policy": 8, "session_len": 1536})
    config = only(calls, "TurbomindEngineConfig")
    assert (config["cache_max_entry_count"], config["quant_policy"], config["session_len"]) == (0.5, 8, 1536)
    assert eng.max_seq == 1536 and eng.describe()["backend_options"] == ["cache_max_entry_count", "quant_policy",
                                                                         "session_len"]
    with pytest.raises(ValueError, match="not_a_field"):
        make(backend_options={"not_a_field": 1})
    with pytest.raises(ValueError, match="FP8 KV"):
        make(backend_options={"quant_policy": 16})  # FP8 KV is PyTorch-engine only
    with pytest.raises(ValueError, match="power of 2"):
        make(engine="pytorch", block_size=24)


def test_speculation_is_refused_at_start_up_never_ignored(calls):
    from completer.engines.lmdeploy import LmdeployEngine

    with pytest.raises(BackendUnavailableError, match="no draft-target or n-gram proposer"):
        LmdeployEngine(MODEL, draft_model="embedded-draft")
    with pytest.raises(BackendUnavailableError, match="speculation='ngram'"):
        LmdeployEngine(MODEL, speculation="ngram")
    with pytest.raises(BackendUnavailableError, match="--backend trtllm"):
        create_engine("lmdeploy", MODEL, speculation="draft", draft_model="embedded-draft")
    assert calls.calls("AsyncEngine") == []


def test_starcoder2_is_refused_by_both_engines(tmp_path, calls):
    from completer.engines.lmdeploy import LmdeployEngine

    model = model_with_architecture(tmp_path, "Starcoder2ForCausalLM")
    for kind in ("turbomind", "pytorch"):
        with pytest.raises(BackendUnavailableError, match="StarCoder2 is not supported by LMDeploy 0.18"):
            LmdeployEngine(model, engine=kind)
    assert calls.calls("AsyncEngine") == []


def test_lmdeploy_api_fake_refuses_starcoder2_itself(tmp_path, fake):
    from lmdeploy.serve.core import AsyncEngine

    with pytest.raises(RuntimeError, match="Starcoder2ForCausalLM is not supported"):
        AsyncEngine(str(model_with_architecture(tmp_path, "Starcoder2ForCausalLM")), backend="pytorch",
                    backend_config=fake.PytorchEngineConfig())


def test_devices_dtypes_and_engines_are_checked(fake):
    from completer.engines.lmdeploy import LmdeployEngine

    with pytest.raises(BackendUnavailableError, match="NVIDIA GPUs only"):
        LmdeployEngine(MODEL, device="cpu")
    with pytest.raises(ValueError, match="float16"):
        LmdeployEngine(MODEL, dtype="float32")
    with pytest.raises(ValueError, match="turbomind, pytorch"):
        LmdeployEngine(MODEL, engine="vllm")


def test_lmdeploy_api_fake_is_strict_about_the_request_api(fake):
    from lmdeploy.messages import SpeculativeConfig
    from lmdeploy.serve.core import AsyncEngine, RequestError

    with pytest.raises(TypeError):
        fake.GenerationConfig(stop_ids=[1])
    with pytest.raises(TypeError):
        fake.TurbomindEngineConfig(block_size=16)  # that is the PyTorch engine's name
    with pytest.raises(ValueError, match="no draft-target or n-gram"):
        SpeculativeConfig(method="ngram")
    assert not hasattr(fake, "SpeculativeConfig")  # not a top-level export
    engine = AsyncEngine(str(MODEL), backend="turbomind", backend_config=fake.TurbomindEngineConfig(session_len=64))
    config = fake.GenerationConfig(max_new_tokens=2)

    async def scenario():
        with pytest.raises(RuntimeError, match="start_loop"):
            await engine.preprocess(session_id=1, gen_config=config, do_preprocess=False, input_ids=[1, 2])
        engine.start_loop(asyncio.get_running_loop(), use_async_api=True)
        with pytest.raises(ValueError, match="exactly one"):
            await engine.preprocess(messages=[{"role": "user", "content": "x"}], session_id=1, gen_config=config,
                                    do_preprocess=False, input_ids=[1, 2])
        with pytest.raises(ValueError, match="do_preprocess=False"):
            await engine.preprocess(session_id=1, gen_config=config, input_ids=[1, 2])
        with pytest.raises(RequestError, match="CONTEXT_LENGTH_EXCEEDED"):
            await engine.preprocess(session_id=1, gen_config=config, do_preprocess=False, input_ids=[1] * 64)
        with pytest.raises(NotImplementedError, match="stop_words"):
            await engine.preprocess(session_id=1, gen_config=fake.GenerationConfig(stop_words=["\n\n"]),
                                    do_preprocess=False, input_ids=[1, 2])
        req = await engine.preprocess(session_id=1, gen_config=config, do_preprocess=False, input_ids=[1, 2])
        outs = [out async for out in engine.generate(req, stream_response=True)]
        assert outs[-1].finish_reason in ("stop", "length") and sum(len(o.token_ids) for o in outs) <= 2
        with pytest.raises(RuntimeError, match="single-use"):
            async for _ in engine.generate(req, stream_response=True):
                pass

    asyncio.run(scenario())


def test_lmdeploy_api_fake_describe_states_the_configuration(engine):
    d = engine.describe()
    assert d["backend"] == "lmdeploy" and d["device"] == "cuda" and d["dtype"] == "auto"
    assert d["model_dir"] == str(MODEL) and d["max_seq"] == MAX_SEQ and d["can_heal"] is False
    assert d["engine"] == "turbomind"
    assert d["speculation"] == "unsupported by LMDeploy 0.18 (no draft-target/n-gram proposer)"
    assert d["kv_cache"] == {"prefix_caching": True, "block_size": BLOCK}
    assert d["version"] == "0.18.0+fake" and d["load_ms"] >= 0
    assert engine.name == "lmdeploy" and engine.can_heal is False


def test_create_engine_dispatches_to_the_lmdeploy_backend(calls):
    eng = create_engine("lmdeploy", MODEL, device="cuda", engine="pytorch")
    try:
        assert type(eng).__name__ == "LmdeployEngine" and only(calls, "AsyncEngine")["backend"] == "pytorch"
    finally:
        eng.close()
    assert calls.calls("stop_all_session") == [{}] and calls.calls("close") == [{}]
    eng.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        run(eng, [1, 2, 3], max_new_tokens=2)


# -- requests -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", PROMPTS)
def test_lmdeploy_api_fake_preprocesses_token_ids_and_streams(engine, calls, reference, text):
    prompt = engine.tokenizer.encode(text)
    ids, out_text, stats = run(engine, prompt, max_new_tokens=24)
    assert ids == greedy(reference, prompt, 24) and out_text == engine.tokenizer.decode(ids)
    assert stats.finish_reason == "max_tokens" and stats.decode_tokens == 24 and stats.forward_passes == 24
    pre = only(calls, "preprocess")
    assert pre["input_ids"] == prompt and pre["do_preprocess"] is False and pre["messages"] is None
    config = pre["gen_config"]
    assert (config.max_new_tokens, config.do_sample, config.stop_token_ids) == (24, False, [EOS])
    assert config.stop_words is None
    assert only(calls, "generate") == {"session_id": pre["session_id"], "stream_response": True}
    assert calls.calls("cancel") == []  # the engine finished by itself


def test_lmdeploy_api_fake_every_request_gets_its_own_session(engine, calls):
    prompt = engine.tokenizer.encode(PROMPTS[2])
    for _ in range(3):
        run(engine, prompt, max_new_tokens=2)
    sessions = [c["session_id"] for c in calls.calls("preprocess")]
    assert len(set(sessions)) == 3 and all(isinstance(s, int) for s in sessions)


def test_lmdeploy_api_fake_reports_prefix_cache_hits(engine):
    prompt = engine.tokenizer.encode(PROMPTS[0] * 3)
    run(engine, prompt + [7], max_new_tokens=2)
    _, _, again = run(engine, prompt, max_new_tokens=2)
    assert again.cached_tokens > 0 and again.cached_tokens % BLOCK == 0  # whole blocks only
    assert again.prefill_tokens == again.prompt_tokens - again.cached_tokens


def test_lmdeploy_api_fake_stop_id_ends_the_request(engine, calls, reference):
    prompt = engine.tokenizer.encode(PROMPTS[0])
    expected = greedy(reference, prompt, 12)
    stop = expected[3]
    ids, _, stats = run(engine, prompt, max_new_tokens=12, stop=StopRules(stop_token_ids=frozenset({stop, EOS}),
                                                                           max_lines=0))
    assert ids == expected[:expected.index(stop)] and stats.finish_reason == "stop_token"
    assert only(calls, "preprocess")["gen_config"].stop_token_ids == sorted({stop, EOS})
    assert calls.calls("cancel") == []


def test_lmdeploy_api_fake_max_tokens_and_the_context_limit(engine, calls, reference):
    prompt = engine.tokenizer.encode(PROMPTS[1])
    ids, _, stats = run(engine, prompt, max_new_tokens=5)
    assert ids == greedy(reference, prompt, 5) and stats.finish_reason == "max_tokens"
    long_prompt = (prompt * 40)[:MAX_SEQ - 6]
    ids, _, stats = run(engine, long_prompt, max_new_tokens=64)
    assert calls.calls("preprocess")[-1]["gen_config"].max_new_tokens == 6
    assert len(ids) <= 6 and stats.finish_reason in ("length", "stop_token")
    with pytest.raises(ValueError, match="does not fit"):
        run(engine, [5] * MAX_SEQ, max_new_tokens=4)


def test_lmdeploy_api_fake_line_limit_is_ours_and_cancels_the_request(engine, calls, fake, monkeypatch):
    monkeypatch.setattr(fake, "STEP_DELAY_S", 0.005)
    prompt = engine.tokenizer.encode(PROMPTS[0])
    _, text, stats = run(engine, prompt, max_new_tokens=64, stop=StopRules(stop_token_ids=frozenset({EOS}),
                                                                             max_lines=1))
    assert "\n" not in text and text.strip() and stats.finish_reason == "max_lines"
    session = only(calls, "preprocess")["session_id"]
    assert only(calls, "cancel")["session_id"] == session and steps_after_cancel(calls, session) == 0


def test_lmdeploy_api_fake_multi_token_stop_string_is_ours(engine, calls, reference):
    prompt = engine.tokenizer.encode(PROMPTS[0])
    full = engine.tokenizer.decode(greedy(reference, prompt, 24))
    assert "\n\n" in full
    _, text, stats = run(engine, prompt, max_new_tokens=24,
                         stop=StopRules(stop_token_ids=frozenset({EOS}), stop_strings=("\n\n",), max_lines=0))
    assert text == full[:full.index("\n\n")] and stats.finish_reason == "stop_string"
    assert only(calls, "preprocess")["gen_config"].stop_words is None  # never handed to LMDeploy


def test_lmdeploy_api_fake_cancel_mid_stream_cancels_before_the_next_step(engine, calls, fake, monkeypatch):
    monkeypatch.setattr(fake, "STEP_DELAY_S", 0.01)
    prompt = engine.tokenizer.encode(PROMPTS[1])
    cancel = threading.Event()
    stream = engine.generate(GenerationRequest(prompt_ids=tuple(prompt), max_new_tokens=200,
                                               stop=StopRules(max_lines=0)), cancel)
    after = []
    for delta in stream:
        if cancel.is_set():
            after.append(delta)
        cancel.set()
    assert after == [] and stream.stats.finish_reason == "cancelled"
    session = only(calls, "preprocess")["session_id"]
    assert steps_after_cancel(calls, session) == 0
    ids, _, _ = run(engine, prompt, max_new_tokens=3)  # usable at once
    assert len(ids) == 3


def test_lmdeploy_api_fake_cancel_from_another_thread_does_not_wait_for_the_engine(engine, calls, fake, monkeypatch):
    monkeypatch.setattr(fake, "STEP_DELAY_S", 0.5)
    prompt = engine.tokenizer.encode(PROMPTS[1])
    cancel = threading.Event()
    stream = engine.generate(GenerationRequest(prompt_ids=tuple(prompt), max_new_tokens=50,
                                               stop=StopRules(max_lines=0)), cancel)
    worker = threading.Thread(target=lambda: list(stream))
    worker.start()
    time.sleep(0.05)
    t0 = time.perf_counter()
    cancel.set()
    worker.join(timeout=5)
    assert not worker.is_alive() and time.perf_counter() - t0 < 0.3
    assert stream.stats.finish_reason == "cancelled" and stream.stats.decode_tokens == 0
    assert len(calls.calls("cancel")) == 1


def test_lmdeploy_api_fake_deadline_cancels(engine, calls, fake, monkeypatch):
    monkeypatch.setattr(fake, "STEP_DELAY_S", 0.02)
    prompt = engine.tokenizer.encode(PROMPTS[1])
    ids, _, stats = run(engine, prompt, max_new_tokens=200, stop=StopRules(max_lines=0),
                        deadline_s=time.monotonic() + 0.15)
    assert stats.finish_reason == "deadline" and 0 < len(ids) < 200
    assert steps_after_cancel(calls, only(calls, "preprocess")["session_id"]) == 0


def test_lmdeploy_api_fake_sampling_parameters(engine, calls):
    prompt = engine.tokenizer.encode(PROMPTS[2])
    a, _, _ = run(engine, prompt, max_new_tokens=8, temperature=0.8, top_p=0.9, seed=7)
    b, _, _ = run(engine, prompt, max_new_tokens=8, temperature=0.8, top_p=0.9, seed=7)
    assert a == b
    config = calls.calls("preprocess")[0]["gen_config"]
    assert (config.do_sample, config.temperature, config.top_p, config.random_seed) == (True, 0.8, 0.9, 7)


@pytest.mark.parametrize("where", ["config.json", "tokenizer_config.json"])
def test_a_model_that_ships_its_own_code_is_refused(tmp_path, calls, where):
    """Issue 24 finding 6: LMDeploy loads with trust_remote_code=True, so auto_map would run the model's code."""
    from completer.engines.lmdeploy import LmdeployEngine

    model = model_with_architecture(tmp_path, "Qwen2ForCausalLM")
    path = model / where
    data = json.loads(path.read_text()) if path.exists() else {}
    data["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig"}
    path.write_text(json.dumps(data))
    for kind in ("turbomind", "pytorch"):
        with pytest.raises(BackendUnavailableError, match="auto_map.*trust_remote_code"):
            LmdeployEngine(model, engine=kind)
    assert calls.calls("AsyncEngine") == []
