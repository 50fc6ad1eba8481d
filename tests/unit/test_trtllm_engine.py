"""The trtllm backend against a strict fake of TensorRT-LLM 1.2.1's LLM API (tests/fakes/tensorrt_llm):
the exact arguments it builds, greedy output equal to the torch backend's, stop rules applied on our
side, abort on cancel and deadline. Tests that go through the fake say `api_fake` in their name."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from completer.engines.contract import BackendUnavailableError, GenerationRequest, StopRules
from completer.engines.loading import create_engine
from completer.engines.model_dirs import resolve_model
from tests.fakes import hide_backends
from tests.fakes.backend_harness import (
    MAX_SEQ,
    MODEL,
    PROMPTS,
    builder,
    fake_package,
    greedy,
    only,
    reference_engine,
    run,
    steps_after,
)

DRAFT = resolve_model("embedded-draft")


@pytest.fixture(scope="module")
def fake():
    yield from fake_package("tensorrt_llm")


@pytest.fixture(scope="module")
def engine(fake):
    from completer.engines.trtllm import TrtllmEngine

    eng = TrtllmEngine(MODEL, max_seq=MAX_SEQ)
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
    """Build extra engines; all are closed after the test."""
    from completer.engines.trtllm import TrtllmEngine

    yield from builder(TrtllmEngine)


def steps_after_abort(fake, request_id) -> int:
    """Decode steps the fake ran for this request after its abort() (must be 0)."""
    return steps_after(fake, "request_id", request_id, "abort")


# -- start-up -------------------------------------------------------------------------------------

def test_missing_tensorrt_llm_raises_backend_unavailable_with_how_to_install(monkeypatch):
    hide_backends(monkeypatch)
    from completer.engines.trtllm import TrtllmEngine

    with pytest.raises(BackendUnavailableError, match=r"tensorrt-llm 1\.2\.1 has no wheel on PyPI") as err:
        TrtllmEngine(MODEL)
    assert "NVIDIA's package index" in str(err.value) and "nvcr.io/nvidia/tensorrt-llm/release:1.2.1" in str(err.value)
    assert "NVIDIA GPU" in str(err.value)
    with pytest.raises(BackendUnavailableError, match="tensorrt_llm is not installed"):
        create_engine("trtllm", MODEL)


def test_trtllm_api_fake_llm_gets_exactly_our_arguments(calls, make):
    make()
    llm = only(calls, "LLM")
    given = {k: v for k, v in llm.items() if k not in ("tokenizer", "tokenizer_mode", "skip_tokenizer_init",
                                                       "trust_remote_code", "tensor_parallel_size", "revision",
                                                       "tokenizer_revision")}
    assert set(given) == {"model", "dtype", "max_seq_len", "max_input_len", "kv_cache_config", "cuda_graph_config",
                          "speculative_config", "disable_overlap_scheduler"}
    assert given["model"] == str(MODEL) and given["dtype"] == "auto"
    assert given["max_seq_len"] == 2048  # the model's max_position_embeddings (below the 8192 cap)
    assert given["max_input_len"] == 2047  # not the validator's 1024: FIM prompts are longer
    from tensorrt_llm.llmapi import CudaGraphConfig, KvCacheConfig, NGramDecodingConfig

    assert given["kv_cache_config"] == KvCacheConfig(enable_block_reuse=True, enable_partial_reuse=True,
                                                     tokens_per_block=16, free_gpu_memory_fraction=0.85)
    assert given["kv_cache_config"].given == {"enable_block_reuse": True, "enable_partial_reuse": True,
                                              "tokens_per_block": 16, "free_gpu_memory_fraction": 0.85}
    assert given["cuda_graph_config"] == CudaGraphConfig(max_batch_size=8, enable_padding=True)
    assert given["speculative_config"] == NGramDecodingConfig(max_draft_len=4, max_matching_ngram_size=4)
    assert given["disable_overlap_scheduler"] is True


def test_trtllm_api_fake_options_map_to_llm_arguments(calls, make):
    make(dtype="bf16", tokens_per_block=32, free_gpu_memory_fraction=0.5, max_seq=1024, cuda_graphs=False,
         max_draft=2, device="cuda:0")
    llm = only(calls, "LLM")
    assert llm["dtype"] == "bfloat16" and llm["max_seq_len"] == 1024 and llm["cuda_graph_config"] is None
    assert llm["kv_cache_config"].tokens_per_block == 32 and llm["kv_cache_config"].free_gpu_memory_fraction == 0.5
    assert llm["speculative_config"].max_draft_len == 2


def test_trtllm_api_fake_draft_target_speculation(calls, make, reference):
    eng = make(speculation="draft", draft_model="embedded-draft")
    llm = only(calls, "LLM")
    from tensorrt_llm.llmapi import DraftTargetDecodingConfig

    assert llm["speculative_config"] == DraftTargetDecodingConfig(max_draft_len=4, speculative_model_dir=str(DRAFT))
    assert llm["disable_overlap_scheduler"] is True
    assert eng.describe()["speculation"] == f"draft-target (max_draft_len=4, speculative_model_dir={DRAFT})"
    prompt = eng.tokenizer.encode(PROMPTS[0])
    ids, _, stats = run(eng, prompt, max_new_tokens=16)
    assert ids == greedy(reference, prompt, 16) and stats.finish_reason == "max_tokens"


def test_trtllm_api_fake_without_speculation(calls, make):
    eng = make(speculation="none")
    llm = only(calls, "LLM")
    assert llm["speculative_config"] is None and "disable_overlap_scheduler" not in llm
    assert eng.describe()["speculation"] == "none" and eng.describe()["overlap_scheduler"] is True


def test_speculation_arguments_are_checked_before_anything_loads(calls):
    from completer.engines.trtllm import TrtllmEngine

    with pytest.raises(ValueError, match="needs a draft model"):
        TrtllmEngine(MODEL, speculation="draft")
    with pytest.raises(ValueError, match="speculation='draft'"):
        TrtllmEngine(MODEL, draft_model="embedded-draft")  # never silently ignored
    with pytest.raises(ValueError, match="choose from ngram, draft, none"):
        TrtllmEngine(MODEL, speculation="eagle")
    with pytest.raises(ValueError, match="unknown dtype"):
        TrtllmEngine(MODEL, dtype="int8")
    assert calls.calls("LLM") == []


def test_trtllm_api_fake_backend_options_override_and_merge(calls, make):
    eng = make(backend_options={
        "kv_cache_config": {"tokens_per_block": 32, "free_gpu_memory_fraction": 0.6},
        "max_num_tokens": 4096, "cuda_graph_config": None, "enable_chunked_prefill": True,
        "speculative_config": {"decoding_type": "NGram", "max_draft_len": 2, "max_matching_ngram_size": 3},
    })
    llm = only(calls, "LLM")
    kv = llm["kv_cache_config"]
    assert (kv.tokens_per_block, kv.free_gpu_memory_fraction, kv.enable_block_reuse, kv.enable_partial_reuse) == \
        (32, 0.6, True, True)  # merged with ours field by field
    assert llm["max_num_tokens"] == 4096 and llm["enable_chunked_prefill"] is True
    assert llm["cuda_graph_config"] is None
    assert (llm["speculative_config"].max_draft_len, llm["speculative_config"].max_matching_ngram_size) == (2, 3)
    d = eng.describe()
    assert d["speculation"] == "ngram (max_draft_len=2, max_matching_ngram_size=3)"
    assert d["kv_cache"]["tokens_per_block"] == 32 and d["cuda_graphs"] is False
    assert d["backend_options"] == ["cuda_graph_config", "enable_chunked_prefill", "kv_cache_config", "max_num_tokens",
                                    "speculative_config"]


def test_trtllm_api_fake_rejects_unknown_backend_options(fake, make):
    with pytest.raises(ValueError, match="extra inputs are not permitted: not_an_option"):
        make(backend_options={"not_an_option": 1})
    with pytest.raises(ValueError, match="build_config"):  # TensorRT-engine-only argument
        make(backend_options={"build_config": {}})
    with pytest.raises(ValueError, match="disk_cache_size"):  # a later release's KvCacheConfig field
        make(backend_options={"kv_cache_config": {"disk_cache_size": 1}})
    with pytest.raises(ValueError, match="max_matching_ngram_size must be > 0"):
        make(backend_options={"speculative_config": {"max_matching_ngram_size": 0}})
    with pytest.raises(ValueError, match="no EagleDecodingConfig"):
        make(backend_options={"speculative_config": {"decoding_type": "Eagle", "max_draft_len": 3}})
    with pytest.raises(ValueError, match="cannot set 'model'"):
        make(backend_options={"model": "/elsewhere"})


def test_trtllm_api_fake_config_classes_are_strict(fake):
    from tensorrt_llm.llmapi import (
        CudaGraphConfig,
        DraftTargetDecodingConfig,
        KvCacheConfig,
        NGramDecodingConfig,
    )

    with pytest.raises(ValueError, match="extra inputs"):
        KvCacheConfig(block_reuse=True)
    with pytest.raises(ValueError, match="expected bool"):
        KvCacheConfig(enable_block_reuse="yes")
    with pytest.raises(ValueError, match="max_matching_ngram_size must be > 0"):
        NGramDecodingConfig(max_draft_len=4)
    with pytest.raises(ValueError, match="speculative_model_dir"):
        DraftTargetDecodingConfig(max_draft_len=4)
    with pytest.raises(ValueError, match="max_draft_len must be > 0"):
        DraftTargetDecodingConfig(max_draft_len=0, speculative_model_dir=str(DRAFT))
    with pytest.raises(ValueError, match="disagree"):
        CudaGraphConfig(batch_sizes=[1, 2, 4], max_batch_size=8)
    with pytest.raises(ValueError, match="top_p"):
        fake.SamplingParams(top_p=1.5)
    with pytest.raises(TypeError):
        fake.SamplingParams(stop_ids=[1])


def test_trtllm_api_fake_refuses_requests_outside_a_running_loop(fake):
    llm = fake.LLM(model=str(MODEL))
    with pytest.raises(RuntimeError, match="running event loop"):
        llm.generate_async([1, 2, 3], streaming=True)

    async def inside():
        with pytest.raises(TypeError, match="list of token ids"):
            llm.generate_async((1, 2, 3), streaming=True)
        with pytest.raises(TypeError, match="cache_salt"):
            llm.generate_async([1, 2, 3], cache_salt=7)
        result = llm.generate_async([1, 2, 3], fake.SamplingParams(max_tokens=2, temperature=0), streaming=True)
        outs = [list(o.outputs[0].token_ids_diff) async for o in result]
        assert result.finished and sum(len(o) for o in outs) <= 2
        result = llm.generate_async([1, 2, 3], fake.SamplingParams(max_tokens=50, ignore_eos=True), streaming=True)
        first = await result.__anext__()
        assert len(first.outputs[0].token_ids_diff) >= 1 and not result.finished
        result.abort()
        last = await result.__anext__()
        assert result.aborted() and result.finished and last.outputs[0].finish_reason == "cancelled"
        assert last.outputs[0].token_ids_diff == []
        with pytest.raises(StopAsyncIteration):
            await result.__anext__()

    asyncio.run(inside())
    llm.shutdown()


def test_cpu_device_is_refused_and_cuda_n_narrows_visible_devices(fake, make, monkeypatch):
    from completer.engines.trtllm import TrtllmEngine

    with pytest.raises(BackendUnavailableError, match="NVIDIA GPUs only"):
        TrtllmEngine(MODEL, device="cpu")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    eng = make(device="cuda:1")
    import os

    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3" and eng.device == "cuda:1"
    with pytest.raises(BackendUnavailableError, match="shows 1 GPU"):
        make(device="cuda:4")


def test_trtllm_api_fake_describe_states_the_configuration(engine):
    d = engine.describe()
    assert d["backend"] == "trtllm" and d["device"] == "cuda" and d["dtype"] == "auto"
    assert d["model_dir"] == str(MODEL) and d["max_seq"] == MAX_SEQ and d["can_heal"] is False
    assert d["speculation"] == "ngram (max_draft_len=4, max_matching_ngram_size=4)"
    assert d["kv_cache"] == {"tokens_per_block": 16, "block_reuse": True, "partial_reuse": True,
                             "free_gpu_memory_fraction": 0.85}
    assert d["cuda_graphs"] is True and d["overlap_scheduler"] is False
    assert d["version"] == "1.2.1+fake" and d["load_ms"] >= 0
    assert engine.name == "trtllm" and engine.can_heal is False and engine.tokenizer.vocab_size == 8192


def test_create_engine_dispatches_to_the_trtllm_backend(fake, calls):
    eng = create_engine("trtllm", MODEL, device="cuda", dtype="float16", speculation="none")
    try:
        assert type(eng).__name__ == "TrtllmEngine" and only(calls, "LLM")["dtype"] == "float16"
    finally:
        eng.close()
    assert calls.calls("shutdown") == [{}]
    eng.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        run(eng, [1, 2, 3], max_new_tokens=2)


# -- requests -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", PROMPTS)
def test_trtllm_api_fake_streams_token_ids_with_cache_salt(engine, calls, reference, text):
    prompt = engine.tokenizer.encode(text)
    ids, out_text, stats = run(engine, prompt, max_new_tokens=24, session_key="file:///w/a.py",
                               cache_scope="workspace-1")
    assert ids == greedy(reference, prompt, 24)
    assert out_text == engine.tokenizer.decode(ids)
    assert stats.finish_reason == "max_tokens" and stats.decode_tokens == 24 and stats.prompt_tokens == len(prompt)
    assert 1 <= stats.forward_passes <= 24 and stats.prefill_ms > 0 and stats.first_token_ms > 0
    call = only(calls, "generate_async")
    assert call["inputs"] == prompt and call["streaming"] is True and call["cache_salt"] == "workspace-1"
    params = call["sampling_params"]
    assert (params.max_tokens, params.temperature, params.end_id, params.stop_token_ids, params.detokenize) == \
        (24, 0.0, 0, [], False)
    assert params.stop is None and params.implies_greedy()
    assert calls.calls("abort") == []  # the engine finished by itself


def test_trtllm_api_fake_requests_without_a_session_share_no_salt_and_use_cache_false_gets_a_unique_one(engine, calls):
    prompt = engine.tokenizer.encode(PROMPTS[2])
    run(engine, prompt, max_new_tokens=2)
    run(engine, prompt, max_new_tokens=2, session_key="s", use_cache=False)
    run(engine, prompt, max_new_tokens=2, session_key="s", use_cache=False)
    salts = [c["cache_salt"] for c in calls.calls("generate_async")]
    assert salts[0] is None and salts[1].startswith("no-reuse-") and salts[1] != salts[2]


def test_trtllm_api_fake_engine_also_ends_at_the_models_eos(engine, calls, reference):
    """end_id is the model's eos: the engine stops there even when the request's stop ids lack it (our
    FIM templates always include it; the torch backend would decode past it)."""
    # Ends of files that a code model closes with its end of text; the first this model ends is used,
    # so that new weights need no new prompt here.
    ends = ['if __name__ == "__main__":\n    unittest.main()\n', 'if __name__ == "__main__":\n    main()\n',
            "\n\nif __name__ == '__main__':\n    sys.exit(main())\n", "module.exports = router;\n"]
    prompt = next((p for p in map(engine.tokenizer.encode, ends) if greedy(reference, p, 1)[0] == 0), None)
    assert prompt is not None, "the model ends none of these files with its eos (0): add one it ends"
    ids, _, stats = run(engine, prompt, max_new_tokens=4)
    assert ids == [] and stats.finish_reason == "stop_token" and stats.forward_passes == 1
    assert only(calls, "generate_async")["sampling_params"].end_id == 0


def test_trtllm_api_fake_stop_id_is_passed_and_ends_the_request(engine, calls, reference):
    prompt = engine.tokenizer.encode(PROMPTS[0])
    expected = greedy(reference, prompt, 12)
    stop = expected[3]
    ids, _, stats = run(engine, prompt, max_new_tokens=12, stop=StopRules(stop_token_ids=frozenset({stop, 1}),
                                                                           max_lines=0))
    assert ids == expected[:expected.index(stop)] and stats.finish_reason == "stop_token"
    assert only(calls, "generate_async")["sampling_params"].stop_token_ids == sorted({stop, 1})
    assert calls.calls("abort") == []


def test_trtllm_api_fake_max_tokens_and_the_context_limit(engine, calls, reference):
    prompt = engine.tokenizer.encode(PROMPTS[1])
    ids, _, stats = run(engine, prompt, max_new_tokens=5)
    assert ids == greedy(reference, prompt, 5) and stats.finish_reason == "max_tokens"
    long_prompt = (prompt * 40)[:MAX_SEQ - 6]
    ids, _, stats = run(engine, long_prompt, max_new_tokens=64)
    assert calls.calls("generate_async")[-1]["sampling_params"].max_tokens == 6  # capped to the context
    assert len(ids) == 6 and stats.finish_reason == "length"
    with pytest.raises(ValueError, match="does not fit"):
        run(engine, [5] * MAX_SEQ, max_new_tokens=4)
    with pytest.raises(ValueError, match="empty prompt"):
        run(engine, [], max_new_tokens=4)


def test_trtllm_api_fake_line_limit_is_ours_and_aborts_the_request(engine, calls, fake, monkeypatch):
    monkeypatch.setattr(fake, "STEP_DELAY_S", 0.005)
    prompt = engine.tokenizer.encode(PROMPTS[0])
    ids, text, stats = run(engine, prompt, max_new_tokens=64, stop=StopRules(max_lines=1))
    assert "\n" not in text and text.strip() and stats.finish_reason == "max_lines"
    call = only(calls, "generate_async")
    assert call["sampling_params"].stop is None  # stop rules are never handed to the engine
    assert only(calls, "abort")["request_id"] == call["request_id"]
    assert steps_after_abort(calls, call["request_id"]) == 0


def test_trtllm_api_fake_stop_string_is_ours(engine, calls, reference):
    prompt = engine.tokenizer.encode(PROMPTS[0])
    full = engine.tokenizer.decode(greedy(reference, prompt, 24))
    stop = full[len(full) // 2:][:3]  # three characters the model writes half-way, whatever its weights
    assert len(stop) == 3, full
    _, text, stats = run(engine, prompt, max_new_tokens=24, stop=StopRules(stop_strings=(stop,), max_lines=0))
    assert text == full[:full.index(stop)] and stats.finish_reason == "stop_string"


def test_trtllm_api_fake_cancel_mid_stream_aborts_before_the_next_step(engine, calls, fake, monkeypatch):
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
    request_id = only(calls, "generate_async")["request_id"]
    assert only(calls, "abort")["request_id"] == request_id
    assert steps_after_abort(calls, request_id) == 0
    ids, _, _ = run(engine, prompt, max_new_tokens=3)  # usable at once
    assert len(ids) == 3


def test_trtllm_api_fake_cancel_from_another_thread_does_not_wait_for_the_engine(engine, calls, fake, monkeypatch):
    monkeypatch.setattr(fake, "STEP_DELAY_S", 0.5)  # a stuck prefill
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
    assert len(calls.calls("abort")) == 1


def test_trtllm_api_fake_deadline_aborts(engine, calls, fake, monkeypatch):
    monkeypatch.setattr(fake, "STEP_DELAY_S", 0.02)
    prompt = engine.tokenizer.encode(PROMPTS[1])
    ids, _, stats = run(engine, prompt, max_new_tokens=200, deadline_s=time.monotonic() + 0.15)
    assert stats.finish_reason == "deadline" and 0 < len(ids) < 200
    assert steps_after_abort(calls, only(calls, "generate_async")["request_id"]) == 0


def test_trtllm_api_fake_abandoned_stream_is_aborted(engine, calls, fake, monkeypatch):
    monkeypatch.setattr(fake, "STEP_DELAY_S", 0.01)
    prompt = engine.tokenizer.encode(PROMPTS[1])
    stream = engine.generate(GenerationRequest(prompt_ids=tuple(prompt), max_new_tokens=100,
                                               stop=StopRules(max_lines=0)))
    it = iter(stream)
    next(it)
    it.close()  # the consumer went away
    assert len(calls.calls("abort")) == 1


def test_trtllm_api_fake_sampling_parameters(engine, calls):
    prompt = engine.tokenizer.encode(PROMPTS[2])
    a, _, _ = run(engine, prompt, max_new_tokens=8, temperature=0.8, top_p=0.9, seed=7)
    b, _, _ = run(engine, prompt, max_new_tokens=8, temperature=0.8, top_p=0.9, seed=7)
    assert a == b
    params = calls.calls("generate_async")[0]["sampling_params"]
    assert (params.temperature, params.top_p, params.seed) == (0.8, 0.9, 7) and not params.implies_greedy()
