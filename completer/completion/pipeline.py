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

from completer.engines.contract import Engine, GenerationRequest, GenerationStats, ScoreRequest, StopRules
from completer.records import FinishReason
from completer.syntax import DIALECT_OF, Snapshot, byte_offset, language_for

from .candidates import Anchor, Candidate, below_anchored, copy_candidates, lines_above_the_line_below
from .fim import detect_template
from .postprocess import Context, postprocess
from .prompt import Prompt, PromptSettings, build_prompt
from .rerank import ModelNotes, Scored, Surroundings, cursor_kind, read_model_notes, surroundings, typed_into

BLOCK_OPENERS = (":", "{", "(", "[")
# Keyword-delimited blocks (Lua: `function f(x)`, `for ... do`, `if ... then`, `else`, `repeat`).
_KEYWORD_OPENER = re.compile(r"(\bdo|\bthen|\belse|\brepeat|\bfunction\b[\w.:\s]*\([^()]*\))$")


@dataclass(frozen=True)
class CompletionSettings:
    max_tokens: int = 48
    # The most tokens the model writes for a one-line suggestion (None: max_tokens). Lines it needed
    # more for were never taken in the replay and were its slowest answers; E2/E3 exact match is the
    # same with 16 (MODEL.md, "A newly opened file's first key, and one-line answers capped").
    line_max_tokens: int | None = 16
    max_lines: int = 6  # for multi-line suggestions
    deadline_ms: float = 400.0  # decoding stops here and returns what it has
    speculative: bool = True
    use_cache: bool = True
    edit_reuse: bool | None = None  # None: the engine's default
    multiline: bool = True
    block_stop: bool = True  # multi-line suggestions stop where the code dedents below the cursor
    fim_template: str | None = None  # a FIM family name; None: detected from the tokenizer
    prompt: PromptSettings = PromptSettings()
    # Copies from the document as candidates, reranked with the model's own text (rerank.py); needs
    # a model with a reranker and a backend that can score.
    rerank: bool = True
    # Show a suggestion only if its confidence (Completer.confidence: the gate's probability that the
    # user takes some of it) is at least this; None: the model's own thresholds (per cursor kind), 0:
    # always show.
    min_confidence: float | None = None
    # The most prompt tokens a keystroke prefills. A prompt that would prefill more (a newly opened
    # file's first key, a jump far away) is answered from a prompt of this many tokens instead, and
    # the result says so (CompletionResult.cold): the server then warms the full prompt (Completer.warm)
    # while the user types. None: always the full prompt (one-shot completions, benchmarks).
    cold_prompt_tokens: int | None = None
    # The prompt's budget in tokens, context chunks included (the user's --prompt-tokens or
    # "promptTokens"); None: prompt.budget_tokens.
    prompt_tokens: int | None = None

    @property
    def prompt_budget(self) -> int:
        return self.prompt_tokens or self.prompt.budget_tokens


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
    # (path, text) of the other files open in the workspace, most recent first: searched for copies
    # (candidates.py), never put in the prompt
    open_files: tuple[tuple[str, str], ...] = ()


@dataclass
class Timings:
    """Milliseconds of one completion: building the prompt, the engine (its prefill and decode),
    post-processing, reranking, and all of it."""
    prompt_ms: float = 0.0
    engine_ms: float = 0.0
    prefill_ms: float = 0.0
    decode_ms: float = 0.0
    post_ms: float = 0.0
    rerank_ms: float = 0.0  # scoring the candidates and choosing one
    total_ms: float = 0.0


@dataclass
class Generation:
    """The model's raw answer: its text, the token ids it chose (a stop token excluded), the engine's
    stats, the prompt it answered, and the completion's deadline (scoring keeps to it too)."""
    text: str
    token_ids: list[int]
    stats: GenerationStats
    prompt: Prompt
    deadline_s: float | None = None


@dataclass(frozen=True)
class Held:
    """What the confidence gate withheld at a cursor: the candidates, ranked, and what they were
    ranked against. Enough to decide again without the model once the user types
    (Completer.reconsider)."""
    ranked: tuple[Scored, ...]
    model_text: str
    around: Surroundings
    language: str | None = None  # syntax.language_for's name (thresholds may differ per language)


def held_after(held: Held, typed: str) -> Held | None:
    """The candidates that predicted `typed`, the user's next characters, as what is left of them
    (rerank.typed_into: their scores are the model's, less the tokens typed; not yet ranked again),
    and what they are ranked against now; None when no candidate predicted `typed`."""
    survivors = [s for s in (typed_into(s, typed) for s in held.ranked) if s is not None]
    if not survivors:
        return None
    model_text = held.model_text[len(typed):] if held.model_text.startswith(typed) else ""
    return dataclasses.replace(held, ranked=tuple(survivors), model_text=model_text,
                               around=dataclasses.replace(held.around, left=held.around.left + typed))


@dataclass
class CompletionResult:
    text: str
    multiline: bool
    finish_reason: FinishReason
    timings: Timings = field(default_factory=Timings)
    stats: GenerationStats = field(default_factory=GenerationStats)
    source: str = "model"  # where the text came from: the model, or a copy (candidates.py)
    # What the gate thresholds: the probability that the user takes some of the text (or, for a model
    # with a reranker and no gate, that the text is exactly right).
    confidence: float | None = None
    withheld: str = ""  # why nothing is shown although the model ran: "language", "confidence"
    alternatives: tuple[str, ...] = ()  # other candidates above the threshold, best first (for cycling)
    ranked: tuple[Scored, ...] = ()  # every candidate scored, best first (benchmarks and fitting read them)
    held: Held | None = None  # withheld for confidence: what to reconsider as the user types
    cold: bool = False  # answered from a short prompt (settings.cold_prompt_tokens): the full one is not cached

    def as_json(self) -> dict:
        return {
            "text": self.text,
            "multiline": self.multiline,
            "finish_reason": self.finish_reason,
            "source": self.source,
            "confidence": None if self.confidence is None else round(self.confidence, 4),
            "withheld": self.withheld,
            "alternatives": list(self.alternatives),
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
    def __init__(self, engine: Engine, settings: CompletionSettings = CompletionSettings(), template: str | None = None,
                 notes: ModelNotes | None = None):
        self.engine = engine
        self.tokenizer = engine.tokenizer
        self.template = detect_template(self.tokenizer, template or settings.fim_template)
        self.settings = settings
        # What the model's completer.json says: its languages and its reranker (rerank.py).
        self.notes = notes if notes is not None else read_model_notes(engine.describe().get("model_dir"))

    def serves(self, language: str | None) -> bool:
        """Whether the model was trained on this language (unknown languages and models: yes)."""
        languages = self.notes.languages
        return languages is None or language is None or DIALECT_OF.get(language, language) in languages

    def complete(self, req: CompletionRequest, cancel: threading.Event | None = None,
                 on_text: Callable[[str], None] | None = None) -> CompletionResult:
        """The suggestion at the request's cursor. `on_text` sees the raw generated text as it grows
        (before post-processing), from the calling thread."""
        t0 = time.perf_counter()
        language = language_for(req.language_id, req.path)
        if not self.serves(language):
            return CompletionResult("", False, "", withheld="language")
        prompt, multiline = self._prompt(req)
        t_prompt = time.perf_counter()
        gen = self._generate(req, prompt, multiline, cancel, on_text, max_prefill=self._cold_limit(prompt))
        shape: dict = {}  # how a cold answer's prompt is cut down (_prompt's budget and context)
        rebuilt_s = 0.0  # building the shorter prompts: counted as prompt time, not engine time
        # More to prefill than the cold budget (nothing was run): a short prompt, and if its context
        # chunks are not cached either, one without them (the last try, with no limit).
        for cut in ({"budget": self.settings.cold_prompt_tokens}, {"context": ()}):
            if gen.stats.finish_reason != "cold":
                break
            t = time.perf_counter()
            shape = {**shape, **cut}
            prompt, multiline = self._prompt(req, **shape)
            rebuilt_s += time.perf_counter() - t
            limit = self._cold_limit(prompt) if req.context and "context" not in shape else None
            gen = self._generate(req, prompt, multiline, cancel, on_text, shape, max_prefill=limit)
        stats = gen.stats
        t_engine = time.perf_counter()
        t_prompt += rebuilt_s
        ctx = self._post_context(req, gen.prompt, multiline, stats)
        text = postprocess(gen.text, ctx) if stats.finish_reason != "cancelled" else ""
        t_post = time.perf_counter()
        result = CompletionResult(text, multiline, stats.finish_reason, stats=stats, cold=bool(shape))
        # Cancelled: nobody waits. Unavailable: the engine is away, and scoring would only wait on it again.
        if self._reranks(multiline) and stats.finish_reason not in ("cancelled", "unavailable"):
            result = self._rerank(req, gen, ctx, result, language, cancel)
        t_end = time.perf_counter()
        result.timings = Timings(prompt_ms=(t_prompt - t0) * 1000, engine_ms=(t_engine - t_prompt) * 1000,
                                 prefill_ms=stats.prefill_ms, decode_ms=stats.decode_ms,
                                 post_ms=(t_post - t_engine) * 1000, rerank_ms=(t_end - t_post) * 1000,
                                 total_ms=(t_end - t0) * 1000)
        return result

    # -- the stages -------------------------------------------------------------------------------

    def warm(self, req: CompletionRequest, cancel: threading.Event | None = None) -> bool:
        """Prefill the full prompt at the request's cursor and generate nothing (after a cold answer, or
        when the context chunks changed), so that the next keystroke finds it cached; stops within one
        piece of the prefill when `cancel` is set, keeping what it computed. True when it ran to the
        end. A backend that cannot prefill alone (Engine.can_prefill False) gets a one-token completion."""
        if not getattr(self.engine, "can_prefill", False):  # the same prompt (the same budget), one token generated
            s = self.settings
            budget = min(s.prompt_budget, self.engine.max_seq - (req.max_tokens or s.max_tokens) - 8)
            one_token = dataclasses.replace(s, cold_prompt_tokens=None, rerank=False, prompt_tokens=budget)
            result = Completer(self.engine, one_token, notes=self.notes).complete(dataclasses.replace(req, max_tokens=1),
                                                                                 cancel)
            return result.finish_reason not in ("cancelled", "unavailable", "error")
        prompt, _ = self._prompt(req)
        request = GenerationRequest(prompt_ids=prompt.ids, max_new_tokens=1, session_key=req.session_key,
                                    cache_scope=req.cache_scope, use_cache=self.settings.use_cache,
                                    edit_reuse=self.settings.edit_reuse)
        return self.engine.prefill(request, cancel).finish_reason == "prefilled"

    def _cold_limit(self, prompt: Prompt) -> int | None:
        """The GenerationRequest.max_prefill that sends a cold key to a short prompt: the cold budget,
        where it is set, the prompt is longer and the backend can tell (Engine.can_prefill)."""
        limit = self.settings.cold_prompt_tokens
        if not limit or len(prompt.ids) <= limit or not self.settings.use_cache:
            return None
        return limit if getattr(self.engine, "can_prefill", False) else None

    def _prompt(self, req: CompletionRequest, heal: bool = True, budget: int | None = None,
                context: tuple[tuple[str, str], ...] | None = None) -> tuple[Prompt, bool]:
        """Contract 1's prompt (leaving room for the answer in the engine's cache), and whether the
        cursor wants a multi-line suggestion. A cold answer's prompt has a smaller budget, and maybe
        no context chunks."""
        s = self.settings
        max_tokens = req.max_tokens or s.max_tokens
        budget = min(budget or s.prompt_budget, self.engine.max_seq - max_tokens - 8)
        settings = dataclasses.replace(s.prompt, budget_tokens=budget, heal=heal and s.prompt.heal)
        prompt = build_prompt(self.tokenizer, self.template, req.lines, req.line, req.character, path=req.path,
                              settings=settings, syntax=req.syntax, context=req.context if context is None else context)
        lines_above = req.lines[max(0, req.line - 8):req.line]
        return prompt, s.multiline and wants_block(prompt.left, prompt.right, lines_above)

    def _generate(self, req: CompletionRequest, prompt: Prompt, multiline: bool, cancel: threading.Event | None,
                  on_text, shape: dict | None = None, max_prefill: int | None = None) -> Generation:
        """The model's raw answer (a backend that cannot heal and went elsewhere than the backed-up
        token is asked again without healing). When the answer will be reranked, the engine also
        reports its tokens' log-probabilities, so the model's own text needs no scoring pass. With
        max_prefill, an engine that would prefill more answers nothing, finish_reason "cold"."""
        s = self.settings
        # A block suggestion ends where the code dedents below the cursor (the block closed).
        indent = len(prompt.left) - len(prompt.left.lstrip(" \t"))
        max_new = req.max_tokens or s.max_tokens
        if not multiline and s.line_max_tokens:
            max_new = min(max_new, s.line_max_tokens)
        request = GenerationRequest(
            prompt_ids=prompt.ids,
            max_new_tokens=max_new,
            deadline_s=time.monotonic() + s.deadline_ms / 1000,
            stop=StopRules(self.template.stop_ids, max_lines=s.max_lines if multiline else 1,
                           min_indent=indent if multiline and indent and s.block_stop else None),
            session_key=req.session_key,
            cache_scope=req.cache_scope,
            speculative=s.speculative,
            use_cache=s.use_cache,
            edit_reuse=s.edit_reuse,
            heal_prefix=prompt.heal_prefix,
            logprobs=self._reranks(multiline),
            watch_token=self.template.end_id,
            max_prefill=max_prefill,
        )
        gen = self._stream(request, prompt, cancel, on_text)
        if gen.stats.finish_reason == "heal_mismatch":
            # The prompt ending at the cursor: its prefix is cached on the server.
            prompt, _ = self._prompt(req, heal=False, **(shape or {}))
            gen = self._stream(dataclasses.replace(request, prompt_ids=prompt.ids, heal_prefix=b""), prompt, cancel,
                               on_text)
        return gen

    def _stream(self, request: GenerationRequest, prompt: Prompt, cancel, on_text) -> Generation:
        parts: list[str] = []
        ids: list[int] = []
        with self.engine.generate(request, cancel) as stream:
            for delta in stream:
                parts.append(delta.text)
                ids += delta.token_ids
                if on_text is not None:
                    on_text(delta.text)
        return Generation("".join(parts), ids, stream.stats, prompt, request.deadline_s)

    def _post_context(self, req: CompletionRequest, prompt: Prompt, multiline: bool,
                      stats: GenerationStats) -> Context:
        treed = req.syntax is not None and req.syntax.tree is not None  # only a tree reads the offset
        cursor_byte = byte_offset(req.lines, req.line, req.character) if treed and multiline else 0
        return Context(prompt.left, prompt.right, prompt.next_lines, multiline, req.syntax, cursor_byte,
                       prompt.prev_lines, truncated=stats.finish_reason in ("max_tokens", "length", "deadline"))

    def _reranks(self, multiline: bool) -> bool:
        return (self.settings.rerank and self.notes.reranker is not None and not multiline
                and getattr(self.engine, "can_score", False))

    def _rerank(self, req: CompletionRequest, gen: Generation, ctx: Context, result: CompletionResult,
                language: str | None, cancel: threading.Event | None) -> CompletionResult:
        """The best candidate if the reranker finds it likely enough to be right, else nothing."""
        anchor = lines_above_the_line_below(req.lines, req.line)  # the copies and the reranker both read it
        scored = self.score_candidates(req, gen, ctx, result.text, cancel, anchor)
        if not scored or (cancel is not None and cancel.is_set()):
            return result
        reranker, kind = self.notes.reranker, cursor_kind(gen.prompt.left)
        around = surroundings(req.lines, req.line, req.character, req.context, anchor)
        ranked = reranker.rank(scored, result.text, kind, around)
        threshold = self.threshold(kind, language)
        best = ranked[0]
        confidence = self.confidence(best)
        if confidence < threshold or not best.candidate.text.strip():
            return dataclasses.replace(result, text="", source=best.candidate.source, confidence=confidence,
                                       withheld="confidence", ranked=tuple(ranked),
                                       held=Held(tuple(ranked), result.text, around, language))
        alternatives = tuple(s.candidate.text for s in ranked[1:]
                             if s.candidate.text.strip() and self.confidence(s) >= threshold)
        return dataclasses.replace(result, text=best.candidate.text, source=best.candidate.source,
                                   confidence=confidence, alternatives=alternatives, ranked=tuple(ranked))

    def reconsider(self, held: Held, typed: str) -> tuple[str, Held | None] | None:
        """The gate's decision again, without the model, after the user typed `typed` where `held`
        was withheld: (text, None) to show; ("", Held) still withheld; None when no candidate
        predicted `typed` (the model must answer). The reranker and the gate were fitted on such
        typed-into candidates too (feature `typed`), so their probabilities mean the same here; on
        held-out cuts its decisions one to three characters in were taken about as often as the
        model's afresh (2026-12-05, MODEL.md)."""
        reranker = self.notes.reranker
        typed_held = held_after(held, typed)
        if reranker is None or typed_held is None:
            return None
        kind = cursor_kind(typed_held.around.left)
        ranked = reranker.rank(typed_held.ranked, typed_held.model_text, kind, typed_held.around)
        best = ranked[0]
        if best.candidate.text.strip() and self.confidence(best) >= self.threshold(kind, typed_held.language):
            return best.candidate.text, None
        return "", dataclasses.replace(typed_held, ranked=tuple(ranked))

    def confidence(self, scored: Scored) -> float:
        """What the gate thresholds for a ranked candidate: the probability that the user takes some
        of it, or without a gate the reranker's probability that it is exactly right."""
        gate = self.notes.gate
        return gate.probability(scored.features) if gate is not None else scored.probability

    def threshold(self, kind: str, language: str | None = None) -> float:
        """The least confidence shown at this kind of cursor position in this language (needs a
        reranker)."""
        if self.settings.min_confidence is not None:
            return self.settings.min_confidence
        language = DIALECT_OF.get(language, language) if language else None
        return (self.notes.gate or self.notes.reranker).threshold(kind, language)

    def score_candidates(self, req: CompletionRequest, gen: Generation, ctx: Context, model_text: str,
                         cancel: threading.Event | None = None, anchor: Anchor | None = None) -> list[Scored]:
        """The model's text and the copies (post-processed alike), each with the model's
        log-probabilities of its tokens: the healed text, the candidate, then the end of the
        suggestion. The model's own come from its generation when its text is a whole number of the
        tokens it chose; the rest take one scoring pass. [] when the backed-up token ends inside a
        character (no fair scoring). anchor: lines_above_the_line_below of the request, where the
        caller already has it."""
        prompt = gen.prompt
        try:
            heal = prompt.heal_prefix.decode("utf-8")
        except UnicodeDecodeError:
            return []
        copy_ctx = dataclasses.replace(ctx, truncated=False)
        candidates = [Candidate(model_text, "model")]
        copies = copy_candidates(req.lines, req.line, req.character, prompt.right, req.context,
                                 open_files=req.open_files)
        for copy in copies + below_anchored(req.lines, req.line, req.character, prompt.right, anchor=anchor):
            text = postprocess(copy.text, copy_ctx)
            if text.strip() and all(text != c.text for c in candidates):
                candidates.append(dataclasses.replace(copy, text=text))
        known = self._generated_logprobs(gen, (heal + model_text).encode("utf-8"))
        to_score = candidates[1:] if known is not None else candidates
        end = [] if self.template.end_id is None else [self.template.end_id]
        encoded = [self.tokenizer.encode(heal + c.text) for c in to_score]
        continuations = tuple(tuple(ids + end) for ids in encoded)
        logprobs = self.engine.score(ScoreRequest(prompt.ids, continuations, req.session_key, self.settings.use_cache,
                                                  req.cache_scope, gen.deadline_s), cancel) if continuations else []
        if known is not None:
            logprobs = [known, *logprobs]
            encoded = [gen.token_ids[:len(known) - 1], *encoded]
        healed = len(prompt.heal_prefix)
        return [Scored(c, tuple(lp), token_ends=self._token_ends(ids) if len(lp) == len(ids) + 1 else (), healed=healed)
                for c, lp, ids in zip(candidates, logprobs, encoded) if lp]

    def _token_ends(self, ids: Sequence[int]) -> tuple[int, ...]:
        token_bytes, ends, at = self.tokenizer.token_bytes, [], 0
        for i in ids:
            at += len(token_bytes[i])
            ends.append(at)
        return tuple(ends)

    def _generated_logprobs(self, gen: Generation, text: bytes) -> list[float] | None:
        """The log-probabilities of the first k generated tokens and of ending after them, where
        those k tokens spell `text` exactly; None when no k does (post-processing changed the text
        inside a token) or the engine did not report them."""
        lps, ends = gen.stats.token_logprobs, gen.stats.watch_logprobs
        token_bytes = self.tokenizer.token_bytes
        spelled = b""
        for k in range(min(len(gen.token_ids), len(lps), len(ends) - 1) + 1):
            if spelled == text:
                return lps[:k] + [ends[k]]
            if k == len(gen.token_ids) or not text.startswith(spelled):
                return None
            spelled += token_bytes[gen.token_ids[k]]
        return None
