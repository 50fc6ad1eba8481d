"""One record of one inlineCompletion answer, from the engine to the replay report.

The engine counts its work in GenerationStats (engines/contract.py), an EngineWork; the server copies
that into an AnswerRecord together with who answered and where the time went; the
request log keeps the records, `completer/stats` sends them as JSON, and `completer replay` reads
them back into the same type. A leaf module: the server, the engines and the replay all import it,
and it imports none of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal, get_args

# Why generation stopped (GenerationStats.finish_reason); "" while it runs.
FinishReason = Literal["", "stop_token", "stop_string", "max_lines", "block_end", "max_tokens", "deadline",
                       "cancelled", "length", "heal_mismatch", "unavailable", "error", "interrupted",
                       "prefilled",  # a warm-up (Engine.prefill) that ran to the end
                       "cold"]  # nothing generated: the prompt would prefill more than max_prefill tokens
# Who answered an inlineCompletion request.
AnswerKind = Literal[
    "typed_through",  # the rest of the shown suggestion, the user typed its start
    "reconsidered",  # typed into a withheld suggestion: decided again without the model (maybe still none)
    "recent",  # a recent suggestion for the same place (fuzzy match of the lines around)
    "recycled",  # the generation still running for the previous keystroke, which typed into it
    "engine",  # the model
    "debounced",  # superseded by a newer request while waiting for typing to pause
    "cancelled",  # cancelled by the client or a newer request
    "stale",  # the document changed while the model ran
    "unavailable",  # the engine daemon or completion server is away
    "error", "not_open", "invalid",
]
ANSWER_KINDS: tuple[str, ...] = get_args(AnswerKind)
@dataclass
class EngineWork:
    """What the engine did for one request, in tokens (GenerationStats counts it as it runs)."""
    prompt_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens whose KV was reused
    restored_tokens: int = 0  # of those, copied in from the block pool (not already in the slot)
    shifted_tokens: int = 0  # of those, unchanged chunks after an edit moved to new positions
    prefill_tokens: int = 0  # prompt tokens computed for this request
    decode_tokens: int = 0  # tokens generated (including the healed-over ones)
    drafted_tokens: int = 0
    accepted_tokens: int = 0


WORK_FIELDS = tuple(f.name for f in dataclasses.fields(EngineWork))


@dataclass
class Spent:
    """Where a model answer's server-side milliseconds went. reuse: looking for a suggestion still
    valid; parse: the tree brought up to date; debounce: waiting for typing to pause; wait: queued
    behind the engine's previous job; prompt, prefill, decode, post, rerank (scoring the candidates):
    the completion itself; back: from the engine thread's end to the request's coroutine. None: the
    answer never reached that part."""
    reuse: float | None = None
    parse: float | None = None
    debounce: float | None = None
    wait: float | None = None
    prompt: float | None = None
    prefill: float | None = None
    decode: float | None = None
    post: float | None = None
    rerank: float | None = None
    back: float | None = None


SPENT_PARTS = tuple(f.name for f in dataclasses.fields(Spent))


@dataclass
class AnswerRecord:
    """One inlineCompletion as the server answered it, keyed the way a client can match it: the
    document version and the client's position."""
    version: int
    line: int
    character: int  # client units
    kind: AnswerKind
    ms: float = 0.0  # server-side, from the request's arrival to its answer
    work: EngineWork | None = None  # the model's work, when it ran for this answer
    finish_reason: FinishReason | None = None  # why it stopped
    spent: Spent = field(default_factory=Spent)

    def take_work(self, stats: EngineWork) -> None:
        """Copy the work counters (and finish reason) of a GenerationStats."""
        self.work = EngineWork(**{name: getattr(stats, name) for name in WORK_FIELDS})
        self.finish_reason = getattr(stats, "finish_reason", None)

    def to_json(self) -> dict:
        out = dataclasses.asdict(self)
        out["ms"] = round(self.ms, 3)
        out["spent"] = {k: round(v, 3) for k, v in out["spent"].items() if v is not None}
        return out

    @classmethod
    def from_json(cls, data: dict) -> "AnswerRecord":
        names = {f.name for f in dataclasses.fields(cls)} - {"work", "spent"}
        work = data.get("work")
        return cls(**{k: v for k, v in data.items() if k in names},
                   work=EngineWork(**{k: v for k, v in work.items() if k in WORK_FIELDS}) if work else None,
                   spent=Spent(**{k: v for k, v in (data.get("spent") or {}).items() if k in SPENT_PARTS}))
