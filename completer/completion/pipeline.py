"""One completion: document + cursor -> prompt -> engine -> post-processed suggestion.

The boundary types are narrow dataclasses; the LSP server and the CLI both call `Completer.complete`
and neither knows about token ids or caches.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from completer.engines.contract import Engine, GenerationRequest, GenerationStats, StopRules
from completer.records import FinishReason
from completer.syntax import Snapshot, byte_offset

from .fim import detect_template
from .postprocess import Context, postprocess
from .prompt import PromptSettings, build_prompt

BLOCK_OPENERS = (":", "{", "(", "[")
# Keyword-delimited blocks (Lua: `function f(x)`, `for ... do`, `if ... then`, `else`, `repeat`).
_KEYWORD_OPENER = re.compile(r"(\bdo|\bthen|\belse|\brepeat|\bfunction\b[\w.:\s]*\([^()]*\))$")


@dataclass(frozen=True)
class CompletionSettings:
    max_tokens: int = 48
    max_lines: int = 6  # for multi-line suggestions
    deadline_ms: float = 400.0  # decoding stops here and returns what it has
    speculative: bool = True
    use_cache: bool = True
    edit_reuse: bool | None = None  # None: the engine's default
    multiline: bool = True
    block_stop: bool = True  # multi-line suggestions stop where the code dedents below the cursor
    fim_template: str | None = None  # a FIM family name; None: detected from the tokenizer
    prompt: PromptSettings = PromptSettings()


@dataclass(frozen=True)
class CompletionRequest:
    lines: Sequence[str]  # the document as split_lines gives it; never mutated
    line: int  # 0-based
    character: int  # 0-based, in code points, clamped to the line
    path: str = "untitled"
    language_id: str = ""
    session_key: str = ""
    cache_scope: str = ""  # the workspace (see GenerationRequest.cache_scope)
    max_tokens: int | None = None  # overrides the settings
    syntax: Snapshot | None = None  # the document's tree for exactly these lines, if its language is known
    context: tuple[tuple[str, str], ...] = ()  # (path, text) chunks of other files, changed only when idle


@dataclass
class Timings:
    """Milliseconds of one completion: building the prompt, the engine (its prefill and decode),
    post-processing, and all of it."""
    prompt_ms: float = 0.0
    engine_ms: float = 0.0
    prefill_ms: float = 0.0
    decode_ms: float = 0.0
    post_ms: float = 0.0
    total_ms: float = 0.0


@dataclass
class CompletionResult:
    text: str
    multiline: bool
    finish_reason: FinishReason
    timings: Timings = field(default_factory=Timings)
    stats: GenerationStats = field(default_factory=GenerationStats)

    def as_json(self) -> dict:
        return {
            "text": self.text,
            "multiline": self.multiline,
            "finish_reason": self.finish_reason,
            "timings": {k: round(v, 3) for k, v in dataclasses.asdict(self.timings).items()},
            "stats": self.stats.as_dict(),
        }


def wants_block(left: str, right: str, lines_above: Sequence[str]) -> bool:
    """A blank cursor line right after a line that opens a block wants a multi-line suggestion."""
    if left.strip() or right.strip():
        return False
    for line in reversed(lines_above):
        if line.strip():
            line = line.rstrip()
            return line.endswith(BLOCK_OPENERS) or _KEYWORD_OPENER.search(line) is not None
    return False


class Completer:
    def __init__(self, engine: Engine, settings: CompletionSettings = CompletionSettings(), template: str | None = None):
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.template = detect_template(self.tokenizer, template or settings.fim_template)
        self.settings = settings

    def complete(self, req: CompletionRequest, cancel: threading.Event | None = None,
                 on_text: Callable[[str], None] | None = None) -> CompletionResult:
        """The suggestion at the request's cursor. `on_text` sees the raw generated text as it grows
        (before post-processing), from the calling thread."""
        t0 = time.perf_counter()
        s = self.settings
        max_tokens = req.max_tokens or s.max_tokens
        # Leave room for the answer in the engine's cache.
        budget = min(s.prompt.budget_tokens, self.engine.max_seq - max_tokens - 8)
        prompt_settings = s.prompt if budget == s.prompt.budget_tokens else dataclasses.replace(
            s.prompt, budget_tokens=budget)
        prompt = build_prompt(self.tokenizer, self.template, req.lines, req.line, req.character,
                              path=req.path, settings=prompt_settings, syntax=req.syntax, context=req.context)
        lines_above = req.lines[max(0, req.line - 8):req.line]
        multiline = s.multiline and wants_block(prompt.left, prompt.right, lines_above)
        t_prompt = time.perf_counter()

        # A block suggestion ends where the code dedents below the cursor (the block closed).
        indent = len(prompt.left) - len(prompt.left.lstrip(" \t"))
        request = GenerationRequest(
            prompt_ids=prompt.ids,
            max_new_tokens=max_tokens,
            deadline_s=time.monotonic() + s.deadline_ms / 1000,
            stop=StopRules(self.template.stop_ids, max_lines=s.max_lines if multiline else 1,
                           min_indent=indent if multiline and indent and s.block_stop else None),
            session_key=req.session_key,
            cache_scope=req.cache_scope,
            speculative=s.speculative,
            use_cache=s.use_cache,
            edit_reuse=s.edit_reuse,
            heal_prefix=prompt.heal_prefix,
        )
        stream = self.engine.generate(request, cancel)
        parts = []
        for delta in stream:
            parts.append(delta.text)
            if on_text is not None:
                on_text(delta.text)
        if stream.stats.finish_reason == "heal_mismatch":
            # A backend that cannot constrain its output went elsewhere than the backed-up token: ask
            # again with the prompt ending at the cursor (its prefix is cached on the server).
            prompt = build_prompt(self.tokenizer, self.template, req.lines, req.line, req.character, path=req.path,
                                  settings=dataclasses.replace(prompt_settings, heal=False), syntax=req.syntax,
                                  context=req.context)
            stream = self.engine.generate(dataclasses.replace(request, prompt_ids=prompt.ids, heal_prefix=b""), cancel)
            for delta in stream:
                parts.append(delta.text)
                if on_text is not None:
                    on_text(delta.text)
        raw = "".join(parts)
        t_engine = time.perf_counter()

        cursor_byte = byte_offset(req.lines, req.line, req.character) if req.syntax is not None and multiline else 0
        ctx = Context(prompt.left, prompt.right, prompt.next_lines, multiline, req.syntax, cursor_byte,
                      prompt.prev_lines, truncated=stream.stats.finish_reason in ("max_tokens", "length", "deadline"))
        text = postprocess(raw, ctx)
        if stream.stats.finish_reason == "cancelled":
            text = ""
        t_end = time.perf_counter()
        timings = Timings(prompt_ms=(t_prompt - t0) * 1000, engine_ms=(t_engine - t_prompt) * 1000,
                          prefill_ms=stream.stats.prefill_ms, decode_ms=stream.stats.decode_ms,
                          post_ms=(t_end - t_engine) * 1000, total_ms=(t_end - t0) * 1000)
        return CompletionResult(text, multiline, stream.stats.finish_reason, timings, stream.stats)
