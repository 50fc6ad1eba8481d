"""Fake `tensorrt_llm.llmapi` (TensorRT-LLM 1.2.1, from the brief /work/shared/refs/engines.md §1.3,
§1.6, §1.7): the config classes our backend builds, as strict models.

Each class takes keyword arguments only, with exactly the brief's field names and defaults; an unknown
name raises like pydantic's extra="forbid"; a value of the wrong type for its default raises; and the
value rules the brief states are enforced (NGram max_matching_ngram_size > 0, DraftTarget needs
max_draft_len > 0 and speculative_model_dir, CudaGraphConfig batch_sizes/max_batch_size agree).
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

from .._record import ValidationError, record


class _StrictModel:
    FIELDS: ClassVar[dict[str, Any]] = {}

    def __init__(self, **kwargs: Any):
        unknown = sorted(set(kwargs) - set(self.FIELDS))
        if unknown:
            raise ValidationError(f"{type(self).__name__}: extra inputs are not permitted: {', '.join(unknown)}")
        for name, default in self.FIELDS.items():
            value = kwargs.get(name, copy.deepcopy(default))
            _check_type(type(self).__name__, name, value, default)
            setattr(self, name, value)
        self.given = dict(kwargs)  # what the caller set explicitly
        self._validate()
        record(type(self).__name__, **kwargs)

    def _validate(self) -> None:
        pass

    def model_dump(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.FIELDS}

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.model_dump() == self.model_dump()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.given.items())})"


def _check_type(owner: str, name: str, value: Any, default: Any) -> None:
    """Fields with a non-None default take that default's type (ints also where floats are expected)."""
    if value is None or default is None:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ValidationError(f"{owner}.{name}: expected {type(default).__name__}, got {value!r}")


class KvCacheConfig(_StrictModel):
    FIELDS = {
        "enable_block_reuse": True, "max_tokens": None, "max_attention_window": None, "sink_token_length": None,
        "free_gpu_memory_fraction": 0.9, "host_cache_size": None, "onboard_blocks": True,
        "cross_kv_cache_fraction": None, "secondary_offload_min_priority": None, "event_buffer_max_size": 0,
        "attention_dp_events_gather_period_ms": 5, "enable_partial_reuse": True, "copy_on_partial_reuse": True,
        "use_uvm": False, "max_gpu_total_bytes": 0, "dtype": "auto", "mamba_ssm_cache_dtype": "auto",
        "tokens_per_block": 32,
    }


class CudaGraphConfig(_StrictModel):
    FIELDS = {"batch_sizes": None, "max_batch_size": 0, "enable_padding": False}

    def _validate(self) -> None:
        if self.batch_sizes is not None:
            if not self.batch_sizes or not all(isinstance(b, int) and b > 0 for b in self.batch_sizes):
                raise ValidationError(f"CudaGraphConfig.batch_sizes: positive ints expected, got {self.batch_sizes!r}")
            if self.max_batch_size and max(self.batch_sizes) != self.max_batch_size:
                raise ValidationError("CudaGraphConfig: batch_sizes and max_batch_size disagree")
        if self.max_batch_size < 0:
            raise ValidationError("CudaGraphConfig.max_batch_size must be >= 0")


class DecodingBaseConfig(_StrictModel):
    decoding_type: ClassVar[str] = ""
    FIELDS = {"max_draft_len": None, "max_total_draft_tokens": None, "speculative_model_dir": None,
              "max_concurrency": None, "load_format": None, "acceptance_window": None,
              "acceptance_length_threshold": None}


class NGramDecodingConfig(DecodingBaseConfig):
    decoding_type = "NGram"
    FIELDS = {**DecodingBaseConfig.FIELDS, "max_matching_ngram_size": 0, "is_keep_all": True, "is_use_oldest": True,
              "is_public_pool": True}

    def _validate(self) -> None:
        if self.max_matching_ngram_size <= 0:
            raise ValidationError("NGramDecodingConfig.max_matching_ngram_size must be > 0")
        if self.max_draft_len is not None and self.max_draft_len <= 0:
            raise ValidationError("NGramDecodingConfig.max_draft_len must be > 0")


class DraftTargetDecodingConfig(DecodingBaseConfig):
    decoding_type = "DraftTarget"

    def _validate(self) -> None:
        if not isinstance(self.max_draft_len, int) or self.max_draft_len <= 0:
            raise ValidationError("DraftTargetDecodingConfig: max_draft_len must be > 0")
        if not self.speculative_model_dir:
            raise ValidationError("DraftTargetDecodingConfig: speculative_model_dir must be set")


__all__ = ["KvCacheConfig", "CudaGraphConfig", "DecodingBaseConfig", "NGramDecodingConfig",
           "DraftTargetDecodingConfig"]
