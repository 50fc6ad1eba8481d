"""A generation still running for a document: a request's, or one started on a keystroke (early.py)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from completer.completion.reuse import typed_since


@dataclass
class InFlight:
    """A generation still running for a document. A later request whose only change is typing what
    it has generated so far takes it over instead of cancelling it (in-flight recycling)."""
    lines: Sequence[str]
    line: int
    character: int
    cancel: threading.Event
    future: asyncio.Future | None = None
    generated: list[str] = field(default_factory=list)  # raw text so far, appended by the engine thread
    claimed: bool = False

    def continued_by(self, lines: Sequence[str], line: int, character: int) -> str | None:
        """The typed text, if this document and cursor only typed what the generation, still running,
        has produced so far."""
        if self.future is None or self.future.done() or self.cancel.is_set():
            return None
        typed = typed_since(self.lines, self.line, self.character, lines, line, character)
        generated = "".join(self.generated)
        return typed if typed and generated.startswith(typed) and len(generated) > len(typed) else None
