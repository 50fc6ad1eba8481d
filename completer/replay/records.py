"""What a replay records: one inlineCompletion as the client saw it, and one session's totals.
The driver fills them in; the report summarises them."""

from __future__ import annotations

from dataclasses import dataclass, field

from completer.records import AnswerRecord


@dataclass
class RequestRecord:
    """One inlineCompletion as the client saw it (times in ms from the session start)."""
    t_sent: float
    version: int
    line: int
    character: int  # client units
    outcome: str = "pending"  # answered | empty | cancelled | stale | error
    latency_ms: float | None = None  # client-observed, for answers that arrived in time
    text: str = ""
    accepted: str = ""  # "" | full | line | word | partial (recorded)
    accepted_chars: int = 0
    server: AnswerRecord | None = None  # the server's own record (who answered, its time and work)
    command: tuple[str, list] | None = None  # the item's accept command, run on Tab
    t_answer: float | None = None  # when the answer arrived (even if read later)
    replaces: int = 0  # characters right of the cursor the item's range covers (closers it runs through)


@dataclass
class SessionResult:
    name: str
    kind: str  # synthetic | recorded
    requests: list[RequestRecord] = field(default_factory=list)
    keystrokes: int = 0
    typed_chars: int = 0  # characters the user typed (or pasted) themselves
    accepted_chars: int = 0  # characters that came from suggestions
    final_chars: int = 0  # size of what was typed: target (synthetic) or inserted text (recorded)
    shown: int = 0  # distinct suggestions that appeared
    accepts: int = 0
    duration_ms: float = 0.0
    ghost_ms: float = 0.0  # time with ghost text on screen
    text_ok: bool | None = None  # synthetic: the document ended as the source file
    recorded_accepted_chars: int = 0  # recorded: what the user accepted then
    agreed_chars: int = 0  # recorded: of those, what the replayed answer offered too
    # When the session's clock (RequestRecord.t_sent) started: ms after the server was launched, once
    # replay_all has rebased it (the replay state sets the perf_counter time in ms).
    started_ms: float = 0.0
    language: str = ""  # the LSP languageId of the document the session opens first
