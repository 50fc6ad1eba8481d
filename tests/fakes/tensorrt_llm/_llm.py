"""Fake `tensorrt_llm.LLM` and its streaming result (brief §1.2, §1.5). See the package docstring."""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fake_torch_steps import TorchSteps, torch_engine

from ._record import ValidationError, record
from .llmapi import CudaGraphConfig, DecodingBaseConfig, DraftTargetDecodingConfig, KvCacheConfig
from .sampling_params import SamplingParams

# BaseLlmArgs + TorchLlmArgs keyword arguments (after the positional-or-keyword ones of LLM.__init__)
# with their defaults; `backend` is the deprecated field, `None` or 'pytorch' for this class.
# "default" stands for the config class built with its own defaults.
LLM_KWARGS: dict[str, Any] = {
    "pipeline_parallel_size": 1, "kv_cache_config": "default", "enable_chunked_prefill": False,
    "guided_decoding_backend": None, "speculative_config": None, "max_batch_size": None, "max_input_len": None,
    "max_seq_len": None, "max_beam_width": None, "max_num_tokens": 8192, "scheduler_config": None,
    "return_perf_metrics": False, "gather_generation_logits": False, "num_postprocess_workers": 0,
    "cuda_graph_config": "default", "disable_overlap_scheduler": False, "attn_backend": "TRTLLM",
    "sampler_type": "auto", "enable_iter_perf_stats": False, "print_iter_log": False, "batch_wait_timeout_ms": 0,
    "torch_compile_config": None, "stream_interval": 1, "load_format": "auto", "checkpoint_format": None,
    "kv_connector_config": None, "enable_autotuner": True, "moe_config": None, "backend": None,
}
DTYPES = ("auto", "float16", "bfloat16", "float32")
_request_ids = itertools.count(1)


def _step_delay() -> float:
    return float(getattr(sys.modules[__package__], "STEP_DELAY_S", 0.0))


class LLM:
    def __init__(self, model, tokenizer=None, tokenizer_mode="auto", skip_tokenizer_init=False,
                 trust_remote_code=False, tensor_parallel_size=1, dtype="auto", revision=None,
                 tokenizer_revision=None, **kwargs: Any):
        record("LLM", model=model, tokenizer=tokenizer, tokenizer_mode=tokenizer_mode,
               skip_tokenizer_init=skip_tokenizer_init, trust_remote_code=trust_remote_code,
               tensor_parallel_size=tensor_parallel_size, dtype=dtype, revision=revision,
               tokenizer_revision=tokenizer_revision, **kwargs)
        unknown = sorted(set(kwargs) - set(LLM_KWARGS))
        if unknown:
            raise ValidationError(f"TorchLlmArgs: extra inputs are not permitted: {', '.join(unknown)}")
        args = {**LLM_KWARGS, **kwargs}
        if not isinstance(model, (str, Path)) or not (Path(model) / "config.json").is_file():
            raise ValidationError(f"fake LLM: model must be a local model directory with config.json, got {model!r}")
        if dtype not in DTYPES:
            raise ValidationError(f"dtype {dtype!r} not in {DTYPES}")
        if tokenizer_mode not in ("auto", "slow"):
            raise ValidationError(f"tokenizer_mode {tokenizer_mode!r} not in ('auto', 'slow')")
        if args["sampler_type"] not in ("auto", "TRTLLMSampler", "TorchSampler"):
            raise ValidationError(f"sampler_type {args['sampler_type']!r}")
        if args["guided_decoding_backend"] not in (None, "xgrammar", "llguidance"):
            raise ValidationError(f"guided_decoding_backend {args['guided_decoding_backend']!r}")
        if args["backend"] not in (None, "pytorch"):
            raise ValidationError("tensorrt_llm.LLM is the PyTorch backend; the TensorRT engine path is "
                                  "tensorrt_llm._tensorrt_engine.LLM")
        if not isinstance(args["stream_interval"], int) or args["stream_interval"] < 1:
            raise ValidationError("stream_interval must be a positive int")
        self.kv_cache_config = _coerce("kv_cache_config", args["kv_cache_config"], KvCacheConfig, KvCacheConfig())
        graphs = args["cuda_graph_config"]
        self.cuda_graph_config = None if graphs is None else _coerce("cuda_graph_config", graphs, CudaGraphConfig,
                                                                     CudaGraphConfig())
        spec = args["speculative_config"]
        if spec is not None and not isinstance(spec, DecodingBaseConfig):
            raise ValidationError(f"speculative_config: expected a *DecodingConfig, got {type(spec).__name__}")
        draft_dir = Path(spec.speculative_model_dir) if isinstance(spec, DraftTargetDecodingConfig) else None
        if draft_dir is not None and not (draft_dir / "config.json").is_file():
            raise ValidationError(f"speculative_model_dir {spec.speculative_model_dir!r} is not a model directory")
        self.speculative_config = spec
        self.model_dir = Path(model)
        self.args = args
        config = json.loads((self.model_dir / "config.json").read_text())
        eos = config.get("eos_token_id")
        self.eos_id = eos[0] if isinstance(eos, list) else eos
        self.vocab_size = int(config["vocab_size"])
        self.max_seq_len = args["max_seq_len"] or int(config.get("max_position_embeddings") or 2048)
        self._serial = asyncio.Lock()  # one request at a time through the shared torch engine
        self._live: set[GenerationResult] = set()
        self._shut = False

    def generate_async(self, inputs, sampling_params=None, lora_request=None, prompt_adapter_request=None,
                       streaming=False, kv_cache_retention_config=None, disaggregated_params=None,
                       _postproc_params=None, scheduling_params=None, cache_salt=None) -> "GenerationResult":
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError("fake tensorrt_llm: generate_async outside a running event loop; the result would "
                               "have no async queue (create requests inside the loop)") from None
        if self._shut:
            raise RuntimeError("LLM has been shut down")
        if not (isinstance(inputs, list) and inputs
                and all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < self.vocab_size for t in inputs)):
            raise TypeError("fake tensorrt_llm: inputs must be a non-empty list of token ids in the vocabulary")
        params = SamplingParams() if sampling_params is None else sampling_params
        if not isinstance(params, SamplingParams):
            raise TypeError(f"sampling_params must be a SamplingParams, got {type(params).__name__}")
        if params.stop:
            raise NotImplementedError("fake tensorrt_llm does not model stop strings; our server enforces them")
        if params.n != 1 or params.best_of not in (None, 1) or params.use_beam_search:
            raise NotImplementedError("fake tensorrt_llm models n=1 without beam search only")
        if not isinstance(streaming, bool):
            raise TypeError("streaming must be a bool")
        if cache_salt is not None and not isinstance(cache_salt, str):
            raise TypeError(f"cache_salt must be a str or None, got {cache_salt!r}")
        if lora_request or prompt_adapter_request or disaggregated_params or scheduling_params:
            raise NotImplementedError("fake tensorrt_llm: LoRA, adapters, disaggregation and scheduling not modelled")
        result = GenerationResult(self, next(_request_ids), list(inputs), params, streaming, loop)
        record("generate_async", request_id=result.request_id, inputs=list(inputs), sampling_params=params,
               streaming=streaming, cache_salt=cache_salt, kv_cache_retention_config=kv_cache_retention_config)
        self._live.add(result)
        return result

    def shutdown(self) -> None:
        record("shutdown")
        self._shut = True
        for result in list(self._live):
            result._release()

    def __enter__(self) -> "LLM":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


def _coerce(name: str, value: Any, cls: type, default: Any) -> Any:
    if value == "default":
        return default
    if isinstance(value, dict):
        return cls(**value)
    if not isinstance(value, cls):
        raise ValidationError(f"{name}: expected {cls.__name__}, got {type(value).__name__}")
    return value


@dataclass
class CompletionOutput:
    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    cumulative_logprob: float | None = None
    logprobs: list = field(default_factory=list)
    finish_reason: str | None = None  # 'stop' | 'length' | 'timeout' | 'cancelled'
    stop_reason: int | str | None = None
    _last_token_ids_len: int = 0
    _last_text_len: int = 0

    @property
    def length(self) -> int:
        return len(self.token_ids)

    @property
    def token_ids_diff(self) -> list[int]:
        return self.token_ids[self._last_token_ids_len:]

    @property
    def text_diff(self) -> str:
        return self.text[self._last_text_len:]


class GenerationResult:
    """`async for out in result` yields the result itself after each decode step (streaming) or once
    at the end; `out.outputs[0].token_ids_diff` holds the step's new tokens."""

    def __init__(self, llm: LLM, request_id: int, prompt: list[int], params: SamplingParams, streaming: bool,
                 loop: asyncio.AbstractEventLoop):
        self._llm, self.request_id, self.prompt_token_ids = llm, request_id, prompt
        self.sampling_params, self._streaming, self._loop = params, streaming, loop
        self._outputs = [CompletionOutput(0)]
        self._done = False
        self._aborted = False
        self._steps: TorchSteps | None = None
        self._holds_lock = False
        self.steps = 0  # decode steps run (the first includes the prefill)

    @property
    def outputs(self) -> list[CompletionOutput]:
        return self._outputs

    @property
    def finished(self) -> bool:
        return self._done

    def aborted(self) -> bool:
        return self._aborted

    def abort(self) -> None:
        record("abort", request_id=self.request_id, steps=self.steps, finished=self._done)
        self._aborted = True
        # The torch engine is released now (not at the next __anext__), on the loop thread.
        if _on_loop(self._loop):
            self._release()
        else:
            self._loop.call_soon_threadsafe(self._release)

    def _release(self) -> None:
        if self._steps is not None:
            self._steps.close()
        if self._holds_lock:
            self._holds_lock = False
            self._llm._serial.release()
        self._llm._live.discard(self)

    def _start(self) -> TorchSteps:
        p, llm = self.sampling_params, self._llm
        greedy = p.implies_greedy()
        stop_ids = set(p.stop_token_ids or [])
        end_id = llm.eos_id if p.end_id is None else p.end_id
        if end_id is not None and not p.ignore_eos:
            stop_ids.add(end_id)
        spec = llm.speculative_config
        engine = torch_engine(llm.model_dir, llm.max_seq_len,
                              spec.speculative_model_dir if isinstance(spec, DraftTargetDecodingConfig) else None)
        return TorchSteps(engine, self.prompt_token_ids, max_tokens=p.max_tokens, stop_ids=stop_ids,
                          keep_ids=frozenset(p.stop_token_ids or []) if p.include_stop_str_in_output else frozenset(),
                          temperature=0.0 if greedy else (p.temperature if p.temperature is not None else 1.0),
                          top_p=1.0 if greedy or p.top_p is None else p.top_p, seed=p.seed,
                          speculative=spec is not None, use_cache=llm.kv_cache_config.enable_block_reuse)

    def __aiter__(self) -> "GenerationResult":
        return self

    async def __anext__(self) -> "GenerationResult":
        if self._done:
            raise StopAsyncIteration
        out = self._outputs[0]
        if self._streaming:
            out._last_token_ids_len, out._last_text_len = len(out.token_ids), len(out.text)
        while True:
            try:
                await asyncio.sleep(_step_delay())
                if self._steps is None and not self._aborted:
                    await self._llm._serial.acquire()
                    self._holds_lock = True
                    if not self._aborted:
                        self._steps = self._start()
            except asyncio.CancelledError:  # the consuming task went away: free the shared torch engine
                self._release()
                raise
            if self._aborted:
                out.finish_reason = "cancelled"
                self._finish()
                return self
            ids, finish = self._steps.step()
            self.steps += 1
            record("step", request_id=self.request_id, token_ids=list(ids))
            out.token_ids.extend(ids)
            if self.sampling_params.detokenize:
                out.text = self._steps.engine.tokenizer.decode(out.token_ids)
            if finish:
                out.finish_reason = finish
                out.stop_reason = self._steps.stop_reason if finish == "stop" else None
                self._finish()
            if self._streaming or self._done:
                return self

    def _finish(self) -> None:
        self._done = True
        self._release()

    async def aresult(self) -> "GenerationResult":
        async for _ in self:
            pass
        return self

    def __await__(self):
        return self.aresult().__await__()


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
