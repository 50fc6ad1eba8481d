"""A request's output rules, applied on our side for every backend: stop ids, stop strings, line and
block limits, the token budget, the heal prefix and UTF-8 hold-back, over whatever the backend
streams (token ids or text pieces). Text a later stop string or block end could still cut is held
back until it cannot (or the backend is done: `flush`).

The torch engine also constrains its tokens to re-type a heal prefix; TensorRT-LLM, LMDeploy and
OpenAI-compatible servers cannot, so there a heal prefix the output does not re-type ends the
request with nothing shown ("heal_mismatch"; the Completer then asks again without healing).
"""

from __future__ import annotations

import threading
import time

from .contract import GenerationRequest, GenerationStats, TokenDelta


class OutputShaper:
    """Feed it a backend's output in order; it returns the visible deltas and sets `finish` once a rule
    ends the request (the caller then stops or aborts the backend's request)."""

    def __init__(self, request: GenerationRequest, stats: GenerationStats, token_bytes=None,
                 started: float | None = None):
        self.request = request
        self.stats = stats
        self.token_bytes = token_bytes  # id -> bytes; needed only by add_tokens
        self.finish = ""
        self._out = bytearray()  # everything generated, the heal prefix included
        self._emitted = 0  # characters of visible text already returned
        self._flushed = False  # the backend is done: nothing held back any more
        self._t0 = time.perf_counter() if started is None else started  # first_token_ms counts from here

    def add_tokens(self, ids) -> TokenDelta | None:
        """Token ids as the backend chose them (stop ids are checked here, not by the backend)."""
        kept: list[int] = []
        for t in ids:
            if self.finish:
                break
            if t in self.request.stop.stop_token_ids:
                self.finish = "stop_token"
                break
            kept.append(t)
            self._out += self.token_bytes[t]
            self._count(1)
        return self._visible(kept)

    def add_text(self, text: str, n_tokens: int = 1) -> TokenDelta | None:
        """A text piece from a server that streams text; `n_tokens` is how many tokens it held."""
        if self.finish:
            return None
        self._out += text.encode("utf-8")
        self._count(n_tokens)
        return self._visible([])

    def check(self, cancel: threading.Event | None) -> str:
        """Between backend outputs: the request's own limits (cancel, deadline)."""
        if not self.finish:
            if cancel is not None and cancel.is_set():
                self.finish = "cancelled"
            elif self.request.deadline_s is not None and time.monotonic() > self.request.deadline_s:
                self.finish = "deadline"
        return self.finish

    def _count(self, n: int) -> None:
        if self.stats.decode_tokens == 0 and n:
            self.stats.first_token_ms = (time.perf_counter() - self._t0) * 1000
        self.stats.decode_tokens += n
        if self.stats.decode_tokens >= self.request.max_new_tokens and not self.finish:
            self.finish = "max_tokens"

    def flush(self) -> TokenDelta | None:
        """Once the backend is done: the text held back in case a rule would cut it."""
        self._flushed = True
        return self._visible([])

    def _held(self, text: str) -> int:
        """Length of `text` that no later output can cut: a tail that may begin a stop string, or a
        newline whose next line's indentation (block end) is not known yet, waits."""
        if self.finish or self._flushed:
            return len(text)
        keep = len(text)
        stop = self.request.stop
        if stop.min_indent is not None:
            nl = text.rfind("\n")
            if nl >= 0 and not text[nl + 1:].strip(" \t"):
                keep = nl
        for s in stop.stop_strings:
            for k in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:k]):
                    keep = min(keep, len(text) - k)
                    break
        return keep

    def _visible(self, ids: list[int]) -> TokenDelta | None:
        heal = self.request.heal_prefix
        out = bytes(self._out)
        if heal:
            # The output must re-type what the prompt backed up; a backend that went elsewhere
            # would overwrite the user's characters, so its answer is dropped.
            if not (out.startswith(heal) or heal.startswith(out)):
                self.finish = "heal_mismatch"
                return None
            out = out[len(heal):]
        text = out[:utf8_complete_len(out)].decode("utf-8", errors="replace")
        stop = self.request.stop
        cut = find_text_stop(text, stop.max_lines, stop.stop_strings, stop.min_indent)
        if cut is not None:
            text = text[:cut[0]]
            self.finish = self.finish if self.finish == "stop_token" else cut[1]
        text = text[:self._held(text)]
        if len(text) <= self._emitted and not ids:
            return None
        delta = TokenDelta(ids, text[self._emitted:])
        self._emitted = max(self._emitted, len(text))
        return delta


def utf8_complete_len(data: bytes) -> int:
    """Length of the longest prefix of `data` that does not end inside a UTF-8 sequence."""
    n = len(data)
    for back in range(1, min(4, n) + 1):
        b = data[n - back]
        if b < 0x80:
            return n  # ASCII: complete
        if b >= 0xC0:  # lead byte: is its sequence complete?
            need = 2 if b < 0xE0 else 3 if b < 0xF0 else 4
            return n if back >= need else n - back
    return n  # only continuation bytes in the last 4: invalid anyway, let the decoder replace them


def find_text_stop(text: str, max_lines: int, stop_strings: tuple[str, ...],
                   min_indent: int | None = None) -> tuple[int, str] | None:
    """Earliest cut point in `text` and its reason, or None. The stop text itself is excluded."""
    best: tuple[int, str] | None = None
    if min_indent is not None:
        start = 0
        while (nl := text.find("\n", start)) >= 0:
            line = text[nl + 1:].split("\n", 1)[0]
            body = line.lstrip(" \t")
            if body and len(line) - len(body) < min_indent:  # indentation known once code starts
                best = (nl, "block_end")
                break
            start = nl + 1
    if max_lines > 0:
        pos = -1
        for _ in range(max_lines):
            pos = text.find("\n", pos + 1)
            if pos < 0:
                break
        else:
            best = (pos, "max_lines")
    for s in stop_strings:
        i = text.find(s)
        if i >= 0 and (best is None or i < best[0]):
            best = (i, "stop_string")
    return best
