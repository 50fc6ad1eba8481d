"""The `torch` backend: our model on CPU (default) or CUDA, one request at a time.

A keystroke's request, top to bottom (TorchEngine._run_locked):

1. prefill (slot.py): the working slot keeps the last prompt's K/V; the new prompt keeps their
   longest common prefix, gets what the block pool holds beyond it copied in (kv_pool.py), has the
   chunks an edit only shifted moved, and computes the rest;
2. the decode loop: greedy or sampled (decoding.Sampler), feeding each chosen token plus a draft when
   one pays for itself (decoding.propose: n-gram lookup, or a draft model, drafter.py), verified k
   at a time so the output is exactly what plain decoding gives; the output rules every backend
   applies (shaper.OutputShaper).

Both run through one forward, eager or compiled (compile.py; on CPU, packages built ahead of time and
cached on disk, aot.py, built in the background while requests run eager when the cache lacks them);
the draft policies weigh drafts by costs measured at load (costs.py; those of compiled packages are
kept beside them for the next start). Requests are serialised by a lock (one model, one slot).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from pathlib import Path

import torch

from completer.engines.contract import GenerationRequest, GenerationStats, GenerationStream, ScoreRequest
from completer.engines.shaper import OutputShaper
from completer.tokenizer import Tokenizer

from .aot import AotStep
from .compile import (
    COMPILED_SCORE_MAX,
    COMPILED_SEGMENT_MAX,
    Compiler,
    Step,
    resolve_compile_mode,
    scratch_start,
)
from .costs import COST_POSITION, KnownCosts, read_known_costs, verification_costs, write_known_costs
from .decoding import (
    DraftPolicy,
    NgramIndex,
    PrefixConstraint,
    Sampler,
    index_by_first_byte,
    propose,
    verify_draft,
)
from .drafter import ModelDrafter, choose_draft, draft_digest, draft_policy
from .kv_pool import BlockPool
from .model import load_model
from .slot import Slot

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}
DEFAULT_MAX_SEQ = 4096
# Tokens per forward of a warm-up's prefill: a keystroke that cancels it waits at most one piece
# (~15 ms on 2 cores); in 128-token pieces a 1,024-token prompt takes ~1.1x its one-forward time.
WARM_PIECE = 128
log = logging.getLogger(__name__)
TORCH_DEFAULT_THREADS = torch.get_num_threads()  # the physical cores; read before any engine changes it


def default_cpu_threads() -> int:
    """Torch threads on CPU when none are asked for: one core fewer than this process may run on
    (at most torch's own default, the physical cores), and at least one. A thread team waits at every
    operator for its slowest member; a member that shares its core with the server's event loop, the
    editor or anything else is descheduled now and then, and a one-token step of ~1 ms then takes
    35-40 ms. On 2 cores that was most of the replay's p95 (BENCHMARKS.md, "One torch thread")."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(TORCH_DEFAULT_THREADS, available - 1))


def dtype_name(dtype: str) -> str:
    """torch's name for one of DTYPES (fp32 -> float32): what the compiled-engine cache is keyed by."""
    return str(DTYPES[dtype]).removeprefix("torch.")


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
    return device


def note_logprobs(stats: GenerationStats, rows: torch.Tensor, chosen: list[int], watch: int | None) -> None:
    """Log-probabilities of the tokens chosen from rows [n, vocab] (one row each, in order; -1 marks
    a step where no token could be chosen) and of the watched token at the same steps."""
    chosen = [t for t in chosen if t >= 0]
    if not chosen:
        return
    logp = torch.log_softmax(rows[:len(chosen)].float(), -1)
    at = torch.arange(len(chosen))
    stats.token_logprobs += logp[at, torch.tensor(chosen)].tolist()
    if watch is not None:
        stats.watch_logprobs += logp[:, watch].tolist()


class TorchEngine:
    name = "torch"
    can_heal = True
    can_score = True
    can_prefill = True  # max_prefill and prefill(): the completer's cold path

    def __init__(self, model_dir: str | Path, *, device: str = "auto", dtype: str = "auto",
                 decode_dtype: str = "auto", max_seq: int | None = None, max_draft: int = 4,
                 num_threads: int | None = None, compile: bool | str = False, cache_mb: float = 64.0,
                 block_size: int = 16, edit_reuse: bool = True, min_chunk: int = 8,
                 draft_model: str | Path | None = "auto"):
        self.device = resolve_device(device)
        mode = resolve_compile_mode(compile, self.device)
        if dtype == "auto":
            dtype = "bfloat16" if self.device.startswith("cuda") else "float32"
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r} (choose from {', '.join(DTYPES)})")
        # Threads on CPU (None on CUDA). Long prefills (past COMPILED_SEGMENT_MAX: a file's first
        # request, eager) use every core: they are few, and a stall is small beside 50-100 ms of work.
        self.threads = self.long_prefill_threads = None
        if self.device == "cpu":
            self.threads = num_threads or default_cpu_threads()
            self.long_prefill_threads = num_threads or max(self.threads, TORCH_DEFAULT_THREADS)
            torch.set_num_threads(self.threads)  # before compiling: Inductor's kernels keep the count
        self.model_dir = Path(model_dir)
        t0 = time.perf_counter()
        self.model = load_model(self.model_dir, device=self.device, dtype=DTYPES[dtype])
        self.tokenizer = Tokenizer(self.model_dir)
        self.params = self.model.num_params()
        # Eager decode-phase calls (1 token, or 1 + a draft) on CPU are ~1.5x faster with bf16 weight
        # copies, while prefill keeps the fp32 weights (bf16 matrix products without AMX/AVX-512 are
        # several times slower). Compiled, fp32 with frozen weights and Inductor's C++ GEMM template is
        # faster still, and a k-token verification costs far less than k steps. See BENCHMARKS.md.
        if decode_dtype == "auto":
            eager_cpu = self.device == "cpu" and dtype == "float32" and mode == "off"
            decode_dtype = "bfloat16" if eager_cpu else "none"
        if decode_dtype != "none" and decode_dtype not in DTYPES:
            raise ValueError(f"unknown decode dtype {decode_dtype!r} (none or one of {', '.join(DTYPES)})")
        if decode_dtype != "none" and self.device == "cpu" and mode != "off":
            raise ValueError("a decode dtype applies to the eager CPU engine only: the compiled one decodes "
                             "with its packages' fp32 weights")
        self.decode_dtype = decode_dtype
        small_dtype = None if decode_dtype == "none" else DTYPES[decode_dtype]
        self.model.prepare_for_inference(small_dtype, small_max_t=1 + max_draft)
        cfg = self.model.config
        if self.tokenizer.vocab_size > cfg.vocab_size:
            raise ValueError(f"tokenizer has {self.tokenizer.vocab_size} tokens but the model only {cfg.vocab_size}")
        # Completion prompts are ~1.5k tokens: preallocating K/V for a 32k context would waste memory.
        # Within a sliding window (StarCoder2) full attention is exactly what the model computes.
        limits = [max_seq or DEFAULT_MAX_SEQ, cfg.max_position_embeddings]
        if cfg.sliding_window:
            limits.append(cfg.sliding_window)
        self.max_seq = min(limits)
        self.model.setup_cache(self.max_seq)
        self.dtype = dtype
        self.max_draft = max_draft
        self.pool = BlockPool(self.model.kv_caches(), cache_mb, block_size)
        self.slot = Slot(self.model.kv_caches(), cfg, self.pool, edit_reuse, min_chunk)
        self._lock = threading.Lock()
        # The last prompt and the logits after it: scoring candidates for the prompt a generation just
        # ran on needs no forward for their first tokens.
        self._after_prompt: tuple[tuple[int, ...], torch.Tensor] | None = None
        self._by_first_byte = index_by_first_byte(self.tokenizer.token_bytes, self.tokenizer.special_ids)
        # The step decode-phase calls and short prefill segments go through (_forward): the model,
        # until a compiled one is swapped in.
        self._decode_fn: Step = self.model
        self.static_decode = False
        self.compiler = Compiler(self.model, self.device, self.max_seq, max_draft, self.model_dir,
                                 dtype_name(dtype), self.threads)
        self.compile_finished = self.compiler.finished  # set unless a background compile is still running
        if mode == "on":
            self._compile_now()
        elif mode == "background":
            cached = self.compiler.load_cached()  # the CPU's packages, when the cache has them: ~0.1 s
            if cached is not None:
                self._decode_fn, mode = cached, "on"
        # What the steps cost: kept beside compiled packages from an earlier start, else measured.
        known = read_known_costs(self._costs_dir, max_draft) if self._costs_dir else None
        costs = list(known.verification) if known is not None else self._measure_costs()
        self.ngram_policy = DraftPolicy(costs)
        # The draft model: one the user named is used, its policy deciding per step; the target's
        # own (auto) is loaded and used only where its measured cost pays (_decide_draft).
        self.draft_choice = choose_draft(self.model_dir, draft_model)
        self.draft_candidate = self.drafter = None
        self.draft_status: dict | None = None
        self._draft_digest: str | None = None  # _digest_of_draft
        if self.draft_choice.model:  # the slot holds nothing at the scratch positions yet (_measure_costs cut it)
            self._load_draft(costs, known, DTYPES[dtype], small_dtype)
        if self._costs_dir:
            self._keep_costs(costs, known)
        self.load_ms = (time.perf_counter() - t0) * 1000
        if mode == "background":
            self.compiler.start_background(self._switch_step, self._lock)
        else:
            self.compile_finished.set()

    @property
    def cached_ids(self) -> list[int]:
        """The slot's tokens (bench/engine_bench.py trims them to time a keystroke again)."""
        return self.slot.cached_ids

    @cached_ids.setter
    def cached_ids(self, ids: list[int]) -> None:
        self.slot.cached_ids = ids

    def generate(self, request: GenerationRequest, cancel: threading.Event | None = None) -> GenerationStream:
        stats = GenerationStats(prompt_tokens=len(request.prompt_ids))
        return GenerationStream(self._run(request, cancel or threading.Event(), stats), stats)

    def _run(self, req: GenerationRequest, cancel: threading.Event, stats: GenerationStats):
        with self._lock, torch.inference_mode():
            yield from self._run_locked(req, cancel, stats)

    def _run_locked(self, req: GenerationRequest, cancel: threading.Event, stats: GenerationStats):
        t_start = time.perf_counter()
        prompt = list(req.prompt_ids)
        limit = self._check_fits(prompt)
        max_new = min(req.max_new_tokens, limit - len(prompt))

        plan = self.slot.plan(prompt, req)
        if req.max_prefill is not None and plan.computed > req.max_prefill:
            stats.finish_reason = "cold"  # the slot and the pool untouched: the caller asks again, shorter
            return
        logits = self.slot.prefill(prompt, req, stats, self._forward, plan=plan)
        self._after_prompt = (req.prompt_ids, logits.clone())  # a CUDA graph's output is reused
        stats.prefill_ms = (time.perf_counter() - t_start) * 1000

        tok = self.tokenizer
        constraint = PrefixConstraint(req.heal_prefix, self._by_first_byte, tok.token_bytes) if req.heal_prefix else None
        sampler = Sampler(req.temperature, req.top_p, req.seed, constraint)
        ngrams = NgramIndex(prompt) if req.speculative else None
        drafter = self.drafter if req.speculative else None
        context = list(prompt)  # prompt + emitted tokens: what the draft model continues
        # The output rules (stop ids and strings, lines, block end, budget, UTF-8) are the ones every
        # backend applies; its clock starts with the request, as first_token_ms counts prefill.
        shaper = OutputShaper(dataclasses.replace(req, max_new_tokens=max_new), stats, tok.token_bytes, t_start)
        pos = len(prompt)  # next cache position to write
        t_decode = time.perf_counter()

        pending: list[int] = [sampler.pick(logits, pos)]
        if req.logprobs:
            note_logprobs(stats, logits[None], pending, req.watch_token)
        while True:
            # Emit the tokens chosen by the last forward pass, one at a time, checking stops.
            chosen: list[int] = []
            for t in pending:
                if t < 0:  # no token can extend the healed text
                    shaper.finish = "stop_token"
                    break
                chosen.append(t)
            delta = shaper.add_tokens(chosen)
            new_ids = delta.token_ids if delta is not None else []
            if constraint is not None:
                for t in new_ids:
                    if constraint.done:
                        break
                    constraint.advance(t)
            if delta is not None:
                yield delta
            finish = shaper.finish
            if finish:
                break
            if cancel.is_set():
                finish = "cancelled"
                break
            if req.deadline_s is not None and time.monotonic() > req.deadline_s:
                finish = "deadline"
                break
            if pos + 1 >= limit:
                finish = "length"
                break
            context.extend(new_ids)
            if ngrams is not None:
                for t in new_ids:
                    ngrams.append(t)

            # Feed the last chosen token, plus a draft when one pays for itself.
            last = new_ids[-1]
            proposal = propose(ngrams, self.ngram_policy, drafter, context, constraint, sampler,
                               min(self.max_draft, limit - pos - 2, max_new - stats.decode_tokens - 1))
            draft = proposal.tokens
            rows = self._forward([last] + draft, pos, 1 + len(draft))
            stats.forward_passes += 1
            self.slot.cached_ids.append(last)
            pos += 1
            pending = verify_draft(rows, draft, sampler, pos)
            if req.logprobs:
                note_logprobs(stats, rows, pending, req.watch_token)
            if draft:
                accepted = len(pending) - 1  # the last token is the target's own (correction or bonus)
                # Accepted draft tokens now have valid K/V; the rest are stale and get overwritten.
                self.slot.cached_ids.extend(draft[:accepted])
                pos += accepted
                stats.drafted_tokens += len(draft)
                stats.accepted_tokens += accepted
                proposal.policy.observe(accepted, len(draft), proposal.key)
            if proposal.shadow is not None:
                self.ngram_policy.observe(int(pending[0] == proposal.shadow[0]), 1, proposal.shadow[1])

        if finish != "cancelled":
            tail = shaper.flush()  # text held back in case a stop string or block end would cut it
            if tail is not None and tail.text:
                yield tail
        stats.finish_reason = finish
        stats.decode_ms = (time.perf_counter() - t_decode) * 1000

    def _check_fits(self, prompt: list[int]) -> int:
        """The cache positions usable now; ValueError for an empty prompt or one that does not fit."""
        if not prompt:
            raise ValueError("empty prompt")
        limit = self.compiler.usable_seq()
        if len(prompt) >= limit:
            raise ValueError(f"prompt of {len(prompt)} tokens does not fit the {limit}-token cache")
        return limit

    def prefill(self, request: GenerationRequest, cancel: threading.Event | None = None) -> GenerationStats:
        """Prefill the request's prompt and generate nothing (a warm-up), WARM_PIECE tokens a forward
        so that `cancel` (the next keystroke) stops it within one piece; what was done stays in the
        slot and the pool for the next request. finish_reason "prefilled" or "cancelled"."""
        stats = GenerationStats(prompt_tokens=len(request.prompt_ids))
        t0 = time.perf_counter()
        with self._lock, torch.inference_mode():
            prompt = list(request.prompt_ids)
            self._check_fits(prompt)
            logits = self.slot.prefill(prompt, request, stats, self._forward, cancel or threading.Event(), WARM_PIECE)
            if logits is not None:
                self._after_prompt = (request.prompt_ids, logits.clone())
        stats.finish_reason = "prefilled" if logits is not None else "cancelled"
        stats.prefill_ms = (time.perf_counter() - t0) * 1000
        return stats

    def score(self, request: ScoreRequest, cancel: threading.Event | None = None) -> list[list[float]]:
        """Each continuation's token log-probabilities after the prompt. The prompt's last logits
        (prefilled, from the cache when a generation just ran on it) give each first token's; one forward
        over the continuation (in pieces only on fixed-shape CUDA graphs) gives the rest. Their K/V past the
        prompt are scratch: the slot keeps the prompt. Stops early (fewer lists) when cancelled."""
        with self._lock, torch.inference_mode():
            prompt = list(request.prompt_ids)
            longest = max(map(len, request.continuations), default=0)
            limit = self.compiler.usable_seq()
            if not prompt or len(prompt) + longest >= limit:
                raise ValueError(f"prompt of {len(prompt)} tokens and a continuation of {longest} do not fit "
                                 f"the {limit}-token cache")
            last = self._after_prompt
            if last is not None and last[0] == request.prompt_ids and self.slot.cached_ids[:len(prompt)] == prompt:
                logits = last[1]  # the generation just before left the prompt in the slot
            else:
                req = GenerationRequest(prompt_ids=request.prompt_ids, use_cache=request.use_cache,
                                        session_key=request.session_key)
                logits = self.slot.prefill(prompt, req, GenerationStats(), self._forward)
                self._after_prompt = (request.prompt_ids, logits.clone())
            after_prompt = torch.log_softmax(logits.float(), -1)
            width = min(COMPILED_SCORE_MAX, self._decode_fn.max_width) if self.static_decode else COMPILED_SCORE_MAX
            scores: list[list[float]] = []
            for tokens in request.continuations:
                if cancel is not None and cancel.is_set():
                    break
                logprobs = [float(after_prompt[tokens[0]])] if tokens else []
                # Token i + 1 is scored by the logits after token i: feed all but the last.
                for at in range(0, len(tokens) - 1, width):
                    piece = tokens[at:min(at + width, len(tokens) - 1)]
                    rows = torch.log_softmax(self._forward(piece, len(prompt) + at, len(piece)).float(), -1)
                    logprobs += rows[torch.arange(len(piece)), torch.tensor(tokens[at + 1:at + 1 + len(piece)])].tolist()
                scores.append(logprobs)
            self.slot.forget_from(len(prompt))
            return scores

    def _forward(self, ids: list[int], start: int, num_logits: int) -> torch.Tensor:
        """The one forward of prefill, decoding and measurements: K/V for ids at start.. into the
        slot, logits [num_logits, vocab] back. Compiled where a graph takes the width, else eager."""
        idx = torch.tensor([ids], dtype=torch.long, device=self.device)
        # The dynamic-shape graphs take any width up to their bound; fixed-shape graphs only theirs.
        if self.static_decode:
            compiled_max = self._decode_fn.max_width  # decode widths, then padded prefill buckets
        else:
            compiled_max = COMPILED_SCORE_MAX if num_logits > 1 else COMPILED_SEGMENT_MAX
        if len(ids) <= compiled_max:
            return self._decode_fn(idx, start_pos=start, num_logits=num_logits)[0]  # [num_logits, vocab]
        wide = len(ids) > COMPILED_SEGMENT_MAX and self.long_prefill_threads != self.threads
        if wide:
            torch.set_num_threads(self.long_prefill_threads)
        try:
            return self.model(idx, start_pos=start, num_logits=num_logits)[0]
        finally:
            if wide:
                torch.set_num_threads(self.threads)

    # -- compiling and measuring -----------------------------------------------------------------

    def _compile_now(self, static: bool | None = None) -> None:
        """Compile before any request (--compile on); static: see Compiler.build."""
        self._decode_fn, self.static_decode = self.compiler.compile_now(static)

    def _switch_step(self, step: Step, static: bool) -> None:
        """The background compile's hand-over, called with the request lock held: the compiled step
        takes over, and the draft policies are measured again against it (and kept for the next
        start, where the step is the packages)."""
        self._decode_fn, self.static_decode = step, static
        costs = self._measure_costs()
        self.ngram_policy = DraftPolicy(costs)
        if self.draft_candidate is not None:  # its costs are relative to the target's step
            self.draft_candidate.policy = self._drafter_policy(costs)
            self._decide_draft()
        if self._costs_dir:
            self._keep_costs(costs, None)

    @property
    def _costs_dir(self) -> Path | None:
        """Where this engine's step costs are kept: the cache entry of the compiled packages it runs
        (costs.KnownCosts); None for an eager or CUDA step, which measures at every start."""
        return self.compiler.entry().path if isinstance(self._decode_fn, AotStep) else None

    def _load_draft(self, costs: list[float], known: KnownCosts | None, dtype: torch.dtype,
                    small_dtype: torch.dtype | None) -> None:
        """Loads the chosen draft model (draft_candidate), unless its step cost was kept from an earlier
        start and says that the target's own draft would not be used: then only its status is set."""
        choice = self.draft_choice
        digest = self._digest_of_draft() if known is not None else None
        known_step = known.draft_steps.get(digest) if known is not None and digest else None
        if known_step is not None and not choice.given and \
                not self._note_draft(Path(choice.model).name, draft_policy(costs, known_step, choice.acceptance)):
            return
        try:
            self.draft_candidate = ModelDrafter(
                choice.model, self._forward, costs, token_bytes=self.tokenizer.token_bytes,
                device=self.device, dtype=dtype, small_dtype=small_dtype, max_seq=self.max_seq,
                max_draft=self.max_draft, acceptance=choice.acceptance, known_step=known_step)
        except (OSError, ValueError) as exc:
            if choice.given:
                raise
            # The paired draft only ever saves time: without it the engine serves the same text.
            log.warning("the paired draft model %s cannot be used (%s): n-gram drafts only", choice.model, exc)
        if self.draft_candidate is not None:
            self._decide_draft()

    def _digest_of_draft(self) -> str | None:
        """What the chosen draft's kept step cost is filed under: its files by content, hashed once."""
        if self._draft_digest is None and self.draft_choice.model:
            self._draft_digest = draft_digest(self.draft_choice.model)
        return self._draft_digest

    def _keep_costs(self, costs: list[float], known: KnownCosts | None) -> None:
        """Writes what was measured for this step (its verification costs, the loaded draft's step) to
        its cache entry, unless the entry holds it already."""
        kept = known if known is not None else KnownCosts(tuple(costs))
        drafter = self.draft_candidate
        digest = self._digest_of_draft() if drafter is not None else None
        if digest is not None and kept.draft_steps.get(digest) != drafter.step:
            kept = kept.with_draft(digest, drafter.step)
        if kept != known:
            write_known_costs(self._costs_dir, self.max_draft, kept)

    def _measure_costs(self) -> list[float]:
        """costs.verification_costs of this engine's step at a typical prompt length. Called with the
        lock held or before serving."""
        start = min(COST_POSITION, scratch_start(self.max_seq, self.max_draft))
        self.slot.forget_from(start)  # the steps overwrite the K/V from there
        return verification_costs(self._forward, start, self.max_draft, self.device)

    def _drafter_policy(self, target_costs: list[float]) -> DraftPolicy:
        """The draft model's policy measured against this engine's step now. Called with the lock
        held or before serving."""
        self.slot.forget_from(scratch_start(self.max_seq, self.max_draft))  # the measured steps write there
        return self.draft_candidate.measured_policy(self._forward, target_costs)

    def _decide_draft(self) -> None:
        """Use the loaded draft or not, from its policy's measured costs (_note_draft). Again after a
        compile."""
        drafter = self.draft_candidate
        self.drafter = drafter if self._note_draft(drafter.model_dir.name, drafter.policy) else None

    def _note_draft(self, name: str, policy: DraftPolicy) -> bool:
        """Whether the draft `name` with `policy` is used, which draft_status then says: the target's
        own draft only when drafting some length pays at the pair's measured acceptance; a draft the
        user named always (its policy still drafts nothing while drafts do not pay)."""
        choice = self.draft_choice
        pays_from = policy.break_even(self.max_draft)
        pays = pays_from is not None and choice.acceptance >= pays_from
        self.draft_status = {
            "model": name, "given": choice.given, "used": pays or choice.given,
            "acceptance": round(choice.acceptance, 3), "pays_from": None if pays_from is None else round(pays_from, 3),
            "cost": [round(c, 2) for c in policy.cost]}
        if not (pays or choice.given):
            need = "would not pay even if every draft were right" if pays_from is None else \
                f"pays from {100 * pays_from:.0f}% acceptance"
            log.info("draft model %s not used: drafting and verifying k = 1..%d tokens costs %s target steps, which "
                     "%s (measured for this pair: %.0f%%); n-gram drafts only", name, self.max_draft,
                     " / ".join(f"{c:.2f}" for c in policy.cost[1:]), need, 100 * choice.acceptance)
        return pays or choice.given

    # -- the rest of the contract ----------------------------------------------------------------

    def describe(self) -> dict:
        cfg = self.model.config
        return {
            "backend": self.name, "device": self.device, "dtype": self.dtype, "model_dir": str(self.model_dir),
            "architecture": cfg.architecture, "parameters": self.params, "max_seq": self.max_seq,
            "decode_dtype": self.decode_dtype, "threads": self.threads,
            "long_prefill_threads": self.long_prefill_threads,
            "compiled": self._decode_fn is not self.model,
            "static_decode": self.static_decode, "compile": self.compiler.state,
            "load_ms": round(self.load_ms, 1), "cache_mb": round(self.pool.mb, 1),
            "cache_blocks": self.pool.index.num_blocks if self.pool.index else 0, "block_size": self.pool.block_size,
            "edit_reuse": self.slot.edit_reuse, "can_heal": self.can_heal, "can_score": self.can_score,
            "can_prefill": self.can_prefill,
            "compiled_engine": self.compiler.entry_path(), "compiled_graphs": self._graphs(),
            "draft": self.draft_status,
        }

    def _graphs(self) -> str | None:
        """Which compiled graphs serve the decode phase (gpu_check.sh prints it)."""
        step = self._decode_fn
        if step is self.model:
            return None
        if isinstance(step, AotStep):
            return ", ".join(f"{kind} {lo}-{hi}" if lo != hi else f"{kind} {lo}"
                             for kind, (lo, hi) in step.widths().items())
        if not self.static_decode:
            return "compiled"
        widths = self._decode_fn.widths
        return (f"{len(widths)} fixed-shape graphs, widths {' '.join(map(str, widths))}"
                + (" (CUDA graphs)" if self.device.startswith("cuda") else ""))

    def close(self) -> None:
        """Forget every cached K/V (slot and pool)."""
        self.slot.clear()
        self.pool.clear()
        self._after_prompt = None
