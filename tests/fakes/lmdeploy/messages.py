"""Fake `lmdeploy.messages` (LMDeploy 0.18.0, brief §2.4-2.7): GenerationConfig, TurbomindEngineConfig,
PytorchEngineConfig and SpeculativeConfig as dataclasses with exactly the brief's fields and defaults.
An unknown keyword is a TypeError (dataclass); the value rules the brief states raise ValueError:
GenerationConfig n == 1; PyTorch cache_max_entry_count in (0, 1) and kernel block size a power of two
>= 16; TurboMind quant_policy without FP8 (16/17); cache_generation 'all' needs prefix caching;
SpeculativeConfig methods from the proposer list only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._record import record

PROPOSERS = ("eagle", "eagle3", "deepseek_mtp", "hy3_mtp", "qwen3_5_mtp", "dflash")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class GenerationConfig:
    n: int = 1
    max_new_tokens: int | None = 512
    do_sample: bool = False
    top_p: float = 1.0
    top_k: int = 50
    min_p: float = 0.0
    temperature: float = 0.8
    repetition_penalty: float = 1.0
    ignore_eos: bool = False
    random_seed: int | None = None
    stop_words: list[str] | None = None
    bad_words: list[str] | None = None
    stop_token_ids: list[int] | None = None
    bad_token_ids: list[int] | None = None
    min_new_tokens: int | None = None
    skip_special_tokens: bool = True
    spaces_between_special_tokens: bool = True
    logprobs: int | None = None
    logprob_start_len: int = -1
    response_format: Any = None
    logits_processors: Any = None
    output_logits: Any = None
    output_last_hidden_state: Any = None
    include_stop_str_in_output: bool = False
    return_ppl: bool = False
    repetition_ngram_size: int = 0
    repetition_ngram_threshold: int = 0

    def __post_init__(self) -> None:
        if self.n != 1:
            raise ValueError("GenerationConfig: only n=1 is supported")
        if not 0 <= self.top_p <= 1:
            raise ValueError(f"GenerationConfig: top_p must be in [0, 1], got {self.top_p}")
        if self.temperature < 0 or self.top_k < 0:
            raise ValueError("GenerationConfig: temperature and top_k must be >= 0")
        if self.max_new_tokens is not None and (not _is_int(self.max_new_tokens) or self.max_new_tokens < 0):
            raise ValueError(f"GenerationConfig: max_new_tokens must be an int >= 0, got {self.max_new_tokens!r}")
        if self.stop_token_ids is not None and not (isinstance(self.stop_token_ids, list)
                                                    and all(_is_int(t) for t in self.stop_token_ids)):
            raise ValueError(f"GenerationConfig: stop_token_ids must be a list of ints, got {self.stop_token_ids!r}")


@dataclass
class TurbomindEngineConfig:
    dtype: str = "auto"
    model_format: str | None = None
    tp: int = 1
    dp: int = 1
    cp: int = 1
    ep: int = 1
    session_len: int | None = None
    max_batch_size: int | None = None
    cache_max_entry_count: float = 0.8
    cache_chunk_size: int = -1
    cache_block_seq_len: int = 64
    enable_prefix_caching: bool = False
    cache_checkpoint_interval: int = 4096
    cache_prompt: str = "auto"
    cache_prompt_boundary_skip: int = 1
    cache_generation: str = "auto"
    quant_policy: int = 0
    rope_scaling_factor: float = 0.0
    max_prefill_token_num: int = 8192
    num_tokens_per_iter: int = 0
    max_prefill_iters: int = 1
    async_: int = 1
    devices: list[int] | None = None
    empty_init: bool = False
    communicator: str = "nccl"
    hf_overrides: dict | None = None
    enable_metrics: bool = True
    nnodes: int = 1
    node_rank: int = 0
    dist_init_addr: str | None = None

    def __post_init__(self) -> None:
        if self.dtype not in ("auto", "float16", "bfloat16"):
            raise ValueError(f"TurbomindEngineConfig: dtype {self.dtype!r}")
        if self.model_format not in (None, "hf", "awq", "gptq", "compressed-tensors", "fp8", "mxfp4"):
            raise ValueError(f"TurbomindEngineConfig: model_format {self.model_format!r}")
        if self.quant_policy not in (0, 4, 8, 42):
            raise ValueError(f"TurbomindEngineConfig: quant_policy {self.quant_policy} (FP8 KV 16/17 is PyTorch-only)")
        if self.cache_prompt not in ("auto", "all") or self.cache_generation not in ("auto", "all", "none"):
            raise ValueError("TurbomindEngineConfig: cache_prompt in auto|all, cache_generation in auto|all|none")
        if self.cache_generation == "all" and not self.enable_prefix_caching:
            raise ValueError("TurbomindEngineConfig: cache_generation='all' needs enable_prefix_caching")
        if self.session_len is not None and (not _is_int(self.session_len) or self.session_len < 1):
            raise ValueError(f"TurbomindEngineConfig: session_len {self.session_len!r}")
        if not _is_int(self.cache_block_seq_len) or self.cache_block_seq_len < 1:
            raise ValueError(f"TurbomindEngineConfig: cache_block_seq_len {self.cache_block_seq_len!r}")
        if self.cache_max_entry_count <= 0:
            raise ValueError("TurbomindEngineConfig: cache_max_entry_count must be > 0")
        record("TurbomindEngineConfig", **self.__dict__)


@dataclass
class PytorchEngineConfig:
    dtype: str = "auto"
    tp: int = 1
    dp: int = 1
    ep: int = 1
    session_len: int | None = None
    max_batch_size: int | None = None
    cache_max_entry_count: float = 0.8
    prefill_interval: int = 16
    block_size: int = 64
    kernel_block_size: int = -1
    num_cpu_blocks: int = 0
    num_gpu_blocks: int = 0
    max_prefill_token_num: int = 8192
    cudagraph_capture_batch_sizes: list[int] | None = None
    piecewise_cudagraph_max_tokens: int | None = None
    eager_mode: bool = False
    thread_safe: bool = False
    enable_prefix_caching: bool = False
    quant_policy: int = 0
    device_type: str = "cuda"
    enable_mp_engine: bool = False
    mp_engine_backend: str = "mp"
    logprobs_mode: str | None = None
    model_format: str | None = None
    hf_overrides: dict | None = None
    enable_metrics: bool = True
    role: str = "Hybrid"  # an EngineRole enum in LMDeploy; the fake keeps its name
    kv_transfer_config: Any = None
    adapters: dict | None = None

    def __post_init__(self) -> None:
        if self.dtype not in ("auto", "float16", "bfloat16"):
            raise ValueError(f"PytorchEngineConfig: dtype {self.dtype!r}")
        if not 0 < self.cache_max_entry_count < 1:
            raise ValueError("PytorchEngineConfig: cache_max_entry_count must be in (0, 1)")
        kernel = self.block_size if self.kernel_block_size == -1 else self.kernel_block_size
        if not _is_int(kernel) or kernel < 16 or kernel & (kernel - 1):
            raise ValueError(f"PytorchEngineConfig: kernel block size {kernel} must be a power of 2 >= 16")
        if self.quant_policy not in (0, 4, 8, 16, 17):
            raise ValueError(f"PytorchEngineConfig: quant_policy {self.quant_policy}")
        if self.logprobs_mode not in (None, "raw_logits", "raw_logprobs"):
            raise ValueError(f"PytorchEngineConfig: logprobs_mode {self.logprobs_mode!r}")
        if self.session_len is not None and (not _is_int(self.session_len) or self.session_len < 1):
            raise ValueError(f"PytorchEngineConfig: session_len {self.session_len!r}")
        record("PytorchEngineConfig", **self.__dict__)


@dataclass
class SpeculativeConfig:
    method: str
    model: str = ""
    num_speculative_tokens: int = 1
    dflash_block_size: int | None = None

    def __post_init__(self) -> None:
        if self.method not in PROPOSERS:
            raise ValueError(f"SpeculativeConfig: method {self.method!r} not in {PROPOSERS} "
                             "(no draft-target or n-gram proposer in 0.18)")
