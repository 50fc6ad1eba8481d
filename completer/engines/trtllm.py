"""The `trtllm` backend: TensorRT-LLM 1.2.1's PyTorch-backend `LLM`, in process, on an NVIDIA GPU.

We build the prompt as token ids, stream `token_ids_diff`, and apply every stop rule on our side with
OutputShaper; the engine also gets the stop ids, end id and token budget so it stops by itself. Its KV
block reuse (partial reuse on) replaces our prefix cache; `cache_salt` = the request's cache scope (the
workspace), so one project's blocks never match another's. Speculation is fixed at start-up: n-gram prompt
lookup (default), a draft model, or none; greedy output is the same either way, and a request's
`speculative=False` cannot switch it off (there is no per-request switch).

TensorRT-LLM streams through asyncio, and a request only gets its async queue when it is created
inside a running loop. We run one loop on a daemon thread: each request is created and read there and
handed to the caller's thread through a queue. That thread checks cancel and deadline between outputs
and aborts the request the moment our side is done, so the engine stops within one decode step.

`tensorrt_llm` is imported lazily: it is not on PyPI as a wheel and needs a GPU (see MISSING).
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any

from completer.tokenizer import Tokenizer

from .contract import GenerationRequest, GenerationStats
from .gpu_runtime import (
    EventLoopThread,
    InProcessGpuEngine,
    Relay,
    eos_id,
    import_backend,
    model_max_seq,
    select_cuda_device,
)
from .model_config import read_hf_config

log = logging.getLogger(__name__)

NGRAM_MATCH = 4  # max_matching_ngram_size: the longest context suffix looked up in the n-gram pool
CUDA_GRAPH_MAX_BATCH = 8  # an editor keeps a few requests in flight: 4 graphs (1, 2, 4, 8), not 34 up to 128
SPECULATION = ("ngram", "draft", "none")
SPECULATION_NAMES = {"NGram": "ngram", "DraftTarget": "draft-target"}  # decoding_type -> what describe() says
DTYPES = {"auto": "auto", "float16": "float16", "fp16": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float32": "float32", "fp32": "float32"}
# Our defaults for these nested LLM(...) configs merge with backend_options' dicts field by field.
MERGED_CONFIGS = {"kv_cache_config": "KvCacheConfig", "cuda_graph_config": "CudaGraphConfig"}
MISSING = ("tensorrt_llm is not installed. tensorrt-llm 1.2.1 has no wheel on PyPI (only an sdist that fetches "
           "the real multi-GB wheel from NVIDIA's package index, https://pypi.nvidia.com); install it from that "
           "index or run inside the NGC image nvcr.io/nvidia/tensorrt-llm/release:1.2.1. It needs an NVIDIA GPU.")



# -- the backend -----------------------------------------------------------------------------------

class _Handle:
    """The backend's request object, set by the pump on the loop thread before its first await."""

    result: Any = None


class TrtllmEngine(InProcessGpuEngine):
    name = "trtllm"
    FINISH_NAMES = {"stop": "stop_token", "cancelled": "cancelled", "timeout": "deadline"}

    def __init__(self, model_dir, *, device: str = "auto", dtype: str = "auto", speculation: str = "ngram",
                 draft_model: str | Path | None = None, max_draft: int = 4, tokens_per_block: int = 16,
                 free_gpu_memory_fraction: float = 0.85, max_seq: int | None = None, cuda_graphs: bool = True,
                 backend_options: dict | None = None):
        t0 = time.perf_counter()
        if speculation not in SPECULATION:
            raise ValueError(f"speculation {speculation!r}: choose from {', '.join(SPECULATION)}")
        if speculation == "draft" and not draft_model:
            raise ValueError("speculation='draft' needs a draft model (--draft-model DIR: a smaller model sharing the "
                             "target's tokenizer)")
        if draft_model and speculation != "draft":
            raise ValueError(f"a draft model was given but speculation is {speculation!r}: pass speculation='draft' "
                             "(--speculation draft) to use it")
        if max_draft < 1:
            raise ValueError(f"max_draft must be >= 1, got {max_draft}")
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
        self.device = select_cuda_device(device, "TensorRT-LLM")
        trt, llmapi = _import_trtllm()
        self._trt = trt
        self.model_dir = Path(model_dir)
        config = read_hf_config(self.model_dir)
        self.tokenizer = Tokenizer(self.model_dir)
        self.eos_id = eos_id(config)

        spec = None
        if speculation == "ngram":
            spec = {"decoding_type": "NGram", "max_draft_len": max_draft, "max_matching_ngram_size": NGRAM_MATCH}
        elif speculation == "draft":
            from .model_dirs import resolve_model

            spec = {"decoding_type": "DraftTarget", "max_draft_len": max_draft,
                    "speculative_model_dir": str(resolve_model(str(draft_model)))}
        # Plain data first (what describe() reports), turned into the config classes at the end.
        plan: dict[str, Any] = {
            "model": str(self.model_dir), "dtype": DTYPES[dtype], "max_seq_len": model_max_seq(config, max_seq),
            # Otherwise a validator sets 1024, and longer FIM prompts would be refused.
            "max_input_len": model_max_seq(config, max_seq) - 1,
            "kv_cache_config": {"enable_block_reuse": True, "enable_partial_reuse": True,
                                "tokens_per_block": tokens_per_block,
                                "free_gpu_memory_fraction": free_gpu_memory_fraction},
            "cuda_graph_config": ({"max_batch_size": CUDA_GRAPH_MAX_BATCH, "enable_padding": True}
                                  if cuda_graphs else None),
            "speculative_config": spec,
        }
        self.backend_options = dict(backend_options or {})
        merge_backend_options(plan, self.backend_options)
        if plan.get("speculative_config") is not None:
            # The docs run both drafters with the overlap scheduler off (two-model speculation needs it).
            plan.setdefault("disable_overlap_scheduler", True)
        self.plan = plan
        self.max_seq = int(plan["max_seq_len"])
        self.dtype = plan["dtype"]
        self.speculation = describe_speculation(plan.get("speculative_config"))
        log.info("trtllm: speculation %s; KV block reuse %s", self.speculation, plan.get("kv_cache_config"))
        if (plan.get("speculative_config") or {}).get("decoding_type") == "DraftTarget":
            log.warning("trtllm: with a draft model, check the start-up log for KV block reuse being disabled "
                        "(a known issue of earlier releases)")
        self.llm = trt.LLM(**build_llm_kwargs(plan, llmapi))
        self.version = getattr(trt, "__version__", "unknown")
        self._loop = EventLoopThread("trtllm-loop")
        self._closed = False
        self.load_ms = (time.perf_counter() - t0) * 1000

    # -- Engine ---------------------------------------------------------------------------------

    def describe(self) -> dict:
        kv = self.plan.get("kv_cache_config")
        kv = kv if isinstance(kv, dict) else {}
        graphs = self.plan.get("cuda_graph_config")
        return {
            "backend": self.name, "device": self.device, "dtype": self.dtype, "model_dir": str(self.model_dir),
            "max_seq": self.max_seq, "can_heal": self.can_heal, "speculation": self.speculation,
            "kv_cache": {"tokens_per_block": kv.get("tokens_per_block"), "block_reuse": kv.get("enable_block_reuse"),
                         "partial_reuse": kv.get("enable_partial_reuse"),
                         "free_gpu_memory_fraction": kv.get("free_gpu_memory_fraction")},
            "cache_salt": "per workspace",
            "reports_cached_tokens": False,  # the LLM API gives no per-request reuse count
            "cuda_graphs": graphs is not None, "cuda_graph_config": graphs,
            "overlap_scheduler": not self.plan.get("disable_overlap_scheduler", False),
            "backend_options": sorted(self.backend_options), "version": self.version,
            "load_ms": round(self.load_ms, 1),
        }

    def _shutdown(self) -> None:
        """Stop the loop (pending reads are cancelled) and shut the engine down."""
        self._loop.stop()
        shutdown = getattr(self.llm, "shutdown", None)
        if shutdown is not None:
            shutdown()

    # -- internals ------------------------------------------------------------------------------

    def sampling_params(self, req: GenerationRequest, max_new: int):
        kw: dict[str, Any] = {"max_tokens": max_new, "end_id": self.eos_id,
                              "stop_token_ids": sorted(req.stop.stop_token_ids),
                              "detokenize": False}  # we decode with our own tokenizer
        if req.temperature > 0:
            kw.update(temperature=req.temperature, top_p=req.top_p, seed=req.seed)
        else:
            kw["temperature"] = 0.0  # greedy (params_imply_greedy_decoding)
        return self._trt.SamplingParams(**kw)

    @staticmethod
    def cache_salt(req: GenerationRequest) -> str | None:
        # Reuse only within a workspace (files of one project share context chunks; other projects'
        # prefixes stay private). use_cache=False gets a salt nothing else has: no block can match
        # (there is no per-request switch for reuse).
        if not req.use_cache:
            return f"no-reuse-{uuid.uuid4().hex}"
        return req.cache_scope or None

    @staticmethod
    def _new_handle() -> _Handle:
        return _Handle()

    async def _outputs(self, prompt: list[int], req: GenerationRequest, max_new: int, handle: _Handle):
        """On the loop thread: create the request (inside the running loop) and yield each output as
        (new token ids, finish reason, 0), copied now: the result object is updated in place."""
        handle.result = self.llm.generate_async(prompt, sampling_params=self.sampling_params(req, max_new),
                                                streaming=True, cache_salt=self.cache_salt(req))
        async for output in handle.result:
            out = output.outputs[0]
            yield list(out.token_ids_diff), out.finish_reason, 0

    @staticmethod
    async def _stop_request(handle: _Handle) -> None:
        result = handle.result
        if result is not None and not result.finished:
            result.abort()

    @staticmethod
    def _finish_stats(stats: GenerationStats, state: Relay) -> None:
        # One streamed output per engine iteration (stream_interval=1): the prefill and each decode
        # step, drafts included. The LLM API reports no per-request reuse or draft counts, so
        # cached_tokens, prefill_tokens, drafted_tokens and accepted_tokens stay 0 (unknown).
        stats.forward_passes = state.outputs



def merge_backend_options(plan: dict, options: dict) -> None:
    """backend_options override our LLM(...) arguments. Dicts for kv_cache_config / cuda_graph_config
    update our fields; a speculative_config dict with decoding_type replaces ours, one without updates
    it. Unknown names are left for LLM(...) to reject (its arguments forbid extras)."""
    for key, value in options.items():
        if key == "model":
            raise ValueError("backend_options cannot set 'model': pass the model directory itself")
        if key in MERGED_CONFIGS and isinstance(value, dict):
            plan[key] = {**(plan.get(key) or {}), **value}
        elif key == "speculative_config" and isinstance(value, dict):
            base = {} if "decoding_type" in value else (plan.get(key) or {})
            plan[key] = {**base, **value}
            if "decoding_type" not in plan[key]:
                raise ValueError("backend_options speculative_config needs decoding_type (NGram, DraftTarget, ...)")
        else:
            plan[key] = value


def build_llm_kwargs(plan: dict, llmapi) -> dict:
    kwargs = dict(plan)
    for key, cls_name in MERGED_CONFIGS.items():
        if isinstance(kwargs.get(key), dict):
            kwargs[key] = getattr(llmapi, cls_name)(**kwargs[key])
    spec = kwargs.get("speculative_config")
    if isinstance(spec, dict):
        fields = dict(spec)
        kind = fields.pop("decoding_type")
        cls = getattr(llmapi, f"{kind}DecodingConfig", None)
        if cls is None:
            raise ValueError(f"speculative_config decoding_type {kind!r}: tensorrt_llm.llmapi has no "
                             f"{kind}DecodingConfig")
        kwargs["speculative_config"] = cls(**fields)
    return kwargs


def describe_speculation(spec) -> str:
    """e.g. 'ngram (max_draft_len=4, max_matching_ngram_size=4)'."""
    if spec is None:
        return "none"
    if not isinstance(spec, dict):
        return type(spec).__name__
    kind = spec.get("decoding_type", "?")
    fields = ", ".join(f"{k}={v}" for k, v in spec.items() if k != "decoding_type")
    return f"{SPECULATION_NAMES.get(kind, kind)} ({fields})"


def _import_trtllm():
    return import_backend("tensorrt_llm", "tensorrt_llm", "llmapi", missing=MISSING,
                          written_for="TensorRT-LLM 1.2.1 (the LLM API)",
                          needs="its CUDA libraries and an NVIDIA GPU")
