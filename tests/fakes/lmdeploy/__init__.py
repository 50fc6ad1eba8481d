"""Fake of LMDeploy 0.18.0's Python API, built from the brief /work/shared/refs/engines.md §2.1-2.7.
Not LMDeploy's code: it exists so our `lmdeploy` backend can be tested without the package or a GPU.

What it checks, strictly:
- the top-level exports of §2.1 exist (only the config classes work; pipeline and the rest raise);
  `SpeculativeConfig` lives in `lmdeploy.messages` only, `AsyncEngine` in `lmdeploy.serve.core`;
- GenerationConfig / TurbomindEngineConfig / PytorchEngineConfig take exactly the brief's fields and
  defaults (unknown keywords are a TypeError) and enforce its value rules;
- `AsyncEngine(...)` gets a backend config matching `backend`, refuses Starcoder2ForCausalLM (removed
  from both engines) and architectures the chosen engine does not list; `start_loop` must be called
  inside the running loop it is handed;
- `preprocess` needs start_loop first, exactly one of messages / input_ids, token ids as a list of
  ints with `do_preprocess=False`, an int session id not already busy (REQUEST_CONFLICT), a prompt
  shorter than session_len (CONTEXT_LENGTH_EXCEEDED), and no stop_words; the request is single-use;
- `generate(req, stream_response=True)` streams one GenOut per decode step; cancelling the consuming
  task or aclose() on the generator is recorded as a cancel and no step runs after it.

Tokens come from our own TorchEngine on the same model directory (fp32, greedy unless do_sample),
one token per step; stop_token_ids plus the model's eos (unless ignore_eos) end a request with
'stop' (the stop id not returned), max_new_tokens with 'length'. `cached_tokens` is the torch
engine's reused prefix rounded down to whole blocks (cache_block_seq_len / block_size), and 0 without
enable_prefix_caching. Every call is appended to `CALLS`.
"""

from __future__ import annotations

from ._record import CALLS, calls, record
from .messages import GenerationConfig, PytorchEngineConfig, TurbomindEngineConfig

__version__ = "0.18.0+fake"
# Seconds each fake decode step waits first (an asyncio sleep: cancellation can land meanwhile).
STEP_DELAY_S = 0.0


class _NotModelled:
    """Exported name the fake does not model: constructing or calling it raises."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError(f"fake lmdeploy: {type(self).__name__} is not modelled")


class Pipeline(_NotModelled):
    pass


class KVTransferConfig(_NotModelled):
    pass


class VisionConfig(_NotModelled):
    pass


class ChatTemplateConfig(_NotModelled):
    pass


class Tokenizer(_NotModelled):
    pass


def pipeline(*args, **kwargs):
    raise NotImplementedError("fake lmdeploy: pipeline() is not modelled; the backend uses AsyncEngine")


__all__ = ["pipeline", "Pipeline", "GenerationConfig", "TurbomindEngineConfig", "PytorchEngineConfig",
           "KVTransferConfig", "VisionConfig", "ChatTemplateConfig", "Tokenizer", "CALLS", "calls",
           "record", "STEP_DELAY_S"]
