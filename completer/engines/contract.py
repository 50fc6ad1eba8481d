"""Contract 2: the engine interface every backend implements.

A request carries token ids, limits, stop rules and a session key; the answer is a stream of token
deltas followed by per-request stats. Cancellation is a `threading.Event` the backend checks between
decode steps, so a cancelled request stops within one step.

Backends: `torch` (torch/engine.py), `trtllm` and `lmdeploy` (in-process GPU engines), `openai` (any
OpenAI-compatible server); loading.py makes one from the user's options. All apply the stop rules
with OutputShaper (shaper.py); only torch can constrain tokens for healing.
tests/e2e/test_backend_contract.py holds them to the same answers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from completer.records import EngineWork, FinishReason

if TYPE_CHECKING:
    from completer.tokenizer import Tokenizer



class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (missing package, no GPU, no server URL)."""


@dataclass(frozen=True)
class StopRules:
    stop_token_ids: frozenset[int] = frozenset()
    stop_strings: tuple[str, ...] = ()
    max_lines: int = 1  # stop once the output holds this many newlines (0 = no line limit)
    # Block end: stop before a line indented less than this many columns (the enclosing block ended).
    min_indent: int | None = None


@dataclass(frozen=True)
class GenerationRequest:
    prompt_ids: tuple[int, ...]
    max_new_tokens: int = 64
    deadline_s: float | None = None  # absolute time.monotonic() after which decoding stops
    stop: StopRules = StopRules()
    session_key: str = ""  # the editor document: per-session affinity in the KV pool
    speculative: bool = True  # n-gram (prompt lookup) drafting; greedy output is identical either way
    use_cache: bool = True  # reuse KV of the longest common prefix with earlier requests
    # Also reuse unchanged chunks after an edit, moved to their new positions (an approximation:
    # their K/V saw the old context). None: the engine's default.
    edit_reuse: bool | None = None
    # Token healing: the text the first generated tokens must start with (bytes the prompt backed up).
    heal_prefix: bytes = b""
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None  # sampling is reproducible for a given seed
    # Who may share cached prefixes on a multi-tenant backend (TensorRT-LLM's cache_salt): the
    # workspace. "": no restriction.
    cache_scope: str = ""
    # Report each chosen token's log-probability, and that of `watch_token` at the same step (the
    # end of a suggestion: how likely it was to stop there), in the stats (backends that can score).
    logprobs: bool = False
    watch_token: int | None = None
    # A newly opened file's first key (the completer's cold path): when more than this many prompt
    # tokens would run through the model, generate nothing and finish "cold", at once, so the caller
    # can ask again with a shorter prompt. Sent only to backends with can_prefill; None: no limit.
    max_prefill: int | None = None


@dataclass(frozen=True)
class ScoreRequest:
    """Score continuations of one prompt (candidate suggestions): the log-probability of each of
    their tokens under the model, the first one given the prompt. The prompt is usually cached from
    the generation just before, so this costs one short forward pass per continuation."""
    prompt_ids: tuple[int, ...]
    continuations: tuple[tuple[int, ...], ...]
    session_key: str = ""
    use_cache: bool = True
    cache_scope: str = ""
    # Absolute time.monotonic() of the completion's deadline: a remote backend stops waiting for the
    # scores soon after it (scoring itself is a few forward passes and is not cut short).
    deadline_s: float | None = None


@dataclass
class GenerationStats(EngineWork):
    """The engine's work on one request (EngineWork's token counts), filled in while it runs."""
    forward_passes: int = 0
    prefill_ms: float = 0.0
    decode_ms: float = 0.0
    first_token_ms: float = 0.0  # from start of generate to the first generated token
    finish_reason: FinishReason = ""
    # With request.logprobs: per token the model chose (in order, a stop token included), its
    # log-probability and the watch token's at that step.
    token_logprobs: list[float] = field(default_factory=list)
    watch_logprobs: list[float] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class TokenDelta:
    token_ids: list[int]
    text: str  # decoded text of these tokens (UTF-8 held back until complete)


@dataclass
class GenerationStream:
    """Iterate for deltas; `stats` is complete once iteration ends. Use it in a `with` block (or call
    `close`): an engine may hold its lock for as long as its generator is suspended, so a consumer that
    stops early, or raises, must close the stream rather than leave it to the garbage collector."""

    deltas: Iterator[TokenDelta]
    stats: GenerationStats = field(default_factory=GenerationStats)

    def __iter__(self) -> Iterator[TokenDelta]:
        return self.deltas

    def close(self) -> None:
        close = getattr(self.deltas, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "GenerationStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Engine(Protocol):
    name: str
    device: str
    tokenizer: "Tokenizer"  # the model's tokenizer: prompts are built as ids on our side
    max_seq: int  # prompt + generated tokens must fit
    # Whether generation can be constrained to re-type a heal prefix (token healing). Backends that
    # cannot get prompts that end at the cursor instead.
    can_heal: bool
    # Whether `score` works: candidate suggestions are reranked only on backends that can score them.
    can_score: bool
    # Whether GenerationRequest.max_prefill is honoured and `prefill` works (below): only then does a
    # newly opened file's first key get a short prompt with the full one warmed behind it.
    can_prefill: bool

    def generate(self, request: GenerationRequest, cancel: threading.Event | None = None) -> GenerationStream: ...

    def score(self, request: ScoreRequest, cancel: threading.Event | None = None) -> list[list[float]]:
        """Per continuation, the log-probability of each of its tokens (a backend that cannot score
        has can_score False and raises NotImplementedError)."""
        ...

    def describe(self) -> dict: ...

    def close(self) -> None: ...

    # Only where can_prefill is True (the torch engine, in process or behind the daemon):
    #   prefill(request, cancel) -> GenerationStats: a warm-up that generates nothing and stops within
    #     one piece of its prefill when cancelled, keeping what it computed (finish_reason "prefilled"
    #     or "cancelled").
