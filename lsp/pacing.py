"""Adaptive debounce: wait before asking the model only while the user types faster than it answers.

Per document, an exponential average of the gaps between requests (gaps over IDLE_S are pauses, not
typing rhythm) and of the model's answer time. While the typical gap is shorter than the typical
answer, most model requests would be cancelled by the next key anyway: a request then waits a
little longer than the typical gap first, so that at a steady rhythm the next key supersedes it
before it costs any model work, and only the last key of a burst runs the model. (A wait shorter
than the gap supersedes nothing when keys come evenly.) At ordinary typing speed the gap is longer
than the answer and nothing waits.
"""

from __future__ import annotations

from dataclasses import dataclass

IDLE_S = 1.0
ALPHA = 0.3  # weight of the newest observation
MAX_DEBOUNCE_S = 0.06
GAP_SHARE = 1.25


@dataclass
class _Rhythm:
    last: float | None = None
    gap: float | None = None  # typical seconds between requests while typing
    answer: float | None = None  # typical seconds for a model answer


def _ema(old: float | None, new: float) -> float:
    return new if old is None else (1 - ALPHA) * old + ALPHA * new


class Pacer:
    def __init__(self) -> None:
        self._rhythm: dict[str, _Rhythm] = {}

    def request(self, uri: str, now: float) -> None:
        r = self._rhythm.setdefault(uri, _Rhythm())
        if r.last is not None and now - r.last < IDLE_S:
            r.gap = _ema(r.gap, now - r.last)
        r.last = now

    def answered(self, uri: str, seconds: float) -> None:
        r = self._rhythm.setdefault(uri, _Rhythm())
        r.answer = _ema(r.answer, seconds)

    def debounce_s(self, uri: str) -> float:
        r = self._rhythm.get(uri)
        if r is None or r.gap is None or r.answer is None or r.gap >= r.answer:
            return 0.0
        return min(MAX_DEBOUNCE_S, GAP_SHARE * r.gap)

    def forget(self, uri: str) -> None:
        self._rhythm.pop(uri, None)
