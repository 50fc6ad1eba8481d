"""Fake of TensorRT-LLM 1.2.1's LLM API (PyTorch backend), built from the brief
/work/shared/refs/engines.md §1.2-1.6. Not NVIDIA's code: it exists so our `trtllm` backend can be
tested on a machine without the package or a GPU.

What it checks, strictly:
- `LLM(model, ..., **kwargs)` accepts exactly the brief's argument names (unknown ones raise like
  pydantic extra="forbid"), a model directory with config.json, enum values (dtype, tokenizer_mode,
  sampler_type, guided_decoding_backend), config objects of the right classes (dicts are coerced the
  way pydantic does), and an existing speculative_model_dir for DraftTarget;
- `generate_async` has the brief's signature, needs a running event loop (the async result queue is
  created only then), `inputs` must be a list of ints inside the vocabulary, `sampling_params` a
  SamplingParams without stop strings (our server enforces those), `cache_salt` a str or None;
- the result is iterated with `async for`, `abort()` marks it cancelled, and no decode step runs after
  an abort: the final output then has finish_reason 'cancelled'.

Tokens come from our own TorchEngine on the same model directory (fp32, greedy unless sampling is
asked for), one forward step per streamed output; with a speculative config a step may hold several
tokens (prompt-lookup drafts verified by the torch engine). Stop ids, end id (default: the model's
eos) and max_tokens end a request as in the real engine: 'stop' (the stop id itself not returned
unless include_stop_str_in_output) or 'length'. Every call is appended to `CALLS`.
"""

from __future__ import annotations

from ._llm import LLM, CompletionOutput, GenerationResult
from ._record import CALLS, ValidationError, calls, record
from .sampling_params import SamplingParams

__version__ = "1.2.1+fake"
# Seconds each fake decode step waits first (an asyncio sleep: abort() can land meanwhile); tests set it
# to make streaming, cancellation and deadlines observable.
STEP_DELAY_S = 0.0

__all__ = ["LLM", "SamplingParams", "CompletionOutput", "GenerationResult", "CALLS", "ValidationError", "calls",
           "record", "STEP_DELAY_S"]
