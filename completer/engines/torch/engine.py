"""The `torch` backend: our model on CPU (default) or CUDA.

Per keystroke the cost is the tokens that changed, not the prompt. Two levels of K/V reuse:

- the working slot: the model's preallocated contiguous cache, where `cached_ids` lists the tokens
  whose K/V are valid at positions 0..len-1. A new prompt reuses its longest common prefix with
  them (typing on one line, accepting a suggestion: the generated tokens are in the slot too);
- the block pool: a preallocated `cache_mb` pool of `block_size`-token blocks indexed by a radix
  tree (kv_pool.PrefixCache) with LRU eviction and per-session affinity. Prompt blocks are saved
  after each prefill; a prompt whose prefix is in the pool (another file, another editor window,
  going back) gets it copied into the slot instead of recomputed.

Decoding is greedy, optionally with n-gram (prompt-lookup) drafts verified k at a time, which yields
the greedy output. Requests are serialised by a lock (one model, one slot).

Decode-phase calls (1 token, 1 + a draft) and prefill segments of up to 256 tokens can run
torch.compile'd: dynamic shapes and frozen weights on CPU, fixed-shape CUDA graphs on CUDA
(Transformer.forward_static, decode widths only); longer prefills stay eager. Compiling takes one to
two minutes on CPU, so it can happen in the background while requests run eager.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import statistics
import threading
import time
import types
from pathlib import Path

import torch

from completer.engines.contract import GenerationRequest, GenerationStats, GenerationStream
from completer.engines.heap import freeze_loaded_objects
from completer.engines.shaper import OutputShaper
from completer.tokenizer import Tokenizer

from .decoding import (
    DraftPolicy,
    NgramIndex,
    PrefixConstraint,
    Sampler,
    index_by_first_byte,
    plan_edit_reuse,
    verify_draft,
)
from .frozen_constants import shared_frozen_constants
from .kv_pool import PrefixCache
from .model import load_model, rerotate_keys

log = logging.getLogger(__name__)

# off; on: compile before the first request; background: serve eager at once and switch when the
# compiled step is ready; auto: background on CPU, off on CUDA (not yet measured on a GPU).
COMPILE_MODES = ("off", "on", "background", "auto")

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}
DEFAULT_MAX_SEQ = 4096
COST_POSITION = 768  # where draft verification costs are measured: about a completion prompt's length
# Prefill segments up to this many tokens run the compiled segment graph (CPU): eager costs ~7 ms a
# forward in per-op overhead alone, compiled 2.5 ms for 6 tokens, 4.6 for 32, 30 for 256 (eager 38).
# Longer prompts prefill eager, where the BLAS handles large products well.
COMPILED_SEGMENT_MAX = 256
TORCH_DEFAULT_THREADS = torch.get_num_threads()  # the physical cores; read before any engine changes it


def default_cpu_threads() -> int:
    """Torch threads on CPU when none are asked for: one core fewer than this process may run on
    (at most torch's own default, the physical cores), and at least one. A thread team waits at every
    operator for its slowest member; a member that shares its core with the server's event loop, the
    editor or anything else is descheduled now and then, and a one-token step of ~1 ms then takes
    35-40 ms. On 2 cores that was most of the replay's p95 (BENCHMARKS.md, "One torch thread")."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(TORCH_DEFAULT_THREADS, available - 1))


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
    return device


def uncovered(start: int, end: int, chunks: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
    """Segments of [start, end) not covered by chunks (old, new, length), in order. plan_edit_reuse
    never covers the last position, so the last segment ends at `end`."""
    out, pos = [], start
    for _, new, n in chunks:
        if new > pos:
            out.append((pos, new))
        pos = new + n
    if pos < end:
        out.append((pos, end))
    return out


def measure_step(forward, start: int, n_tokens: int, device: str, repeats: int = 5, then: int = 0) -> float:
    """Median seconds of a forward over n_tokens at cache position `start`, followed by one over
    `then` tokens when then > 0."""
    samples = []
    with torch.inference_mode():
        for _ in range(repeats + 1):
            t0 = time.perf_counter()
            forward([0] * n_tokens, start, n_tokens)
            if then:
                forward([0] * then, start, then)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            samples.append(time.perf_counter() - t0)
    return sorted(samples[1:])[repeats // 2]


def keep_module_tensor_guards(entries) -> list[bool]:
    """Which of dynamo's guards a compiled decode step checks. All of them take ~0.2 ms per call on
    this CPU, a seventh of a decode step; those on module attributes (types, dicts, hooks) can go,
    since our modules never change after loading (K/V buffers are written in place, never replaced),
    which saves about a quarter of that. Kept: all guards outside the modules, and the shape/dtype and
    constant guards inside them, so another model compiled in the same process (a configuration
    reload) never runs this one's graphs (a test)."""
    kinds = ("TENSOR_MATCH", "EQUALS_MATCH", "CONSTANT_MATCH")
    return [not e.orig_guard.source.is_unspecialized_nn_module() or e.guard_type in kinds for e in entries]


def common_prefix_len(a, b) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class TorchEngine:
    name = "torch"
    can_heal = True

    def __init__(self, model_dir: str | Path, *, device: str = "auto", dtype: str = "auto",
                 decode_dtype: str = "auto", max_seq: int | None = None, max_draft: int = 4,
                 num_threads: int | None = None, compile: bool | str = False, cache_mb: float = 64.0,
                 block_size: int = 16, edit_reuse: bool = True, min_chunk: int = 8,
                 draft_model: str | Path | None = None):
        self.device = resolve_device(device)
        mode = ("on" if compile else "off") if isinstance(compile, bool) else compile
        if mode not in COMPILE_MODES:
            raise ValueError(f"unknown compile mode {compile!r} (one of {', '.join(COMPILE_MODES)})")
        if mode == "auto":
            mode = "background" if self.device == "cpu" else "off"
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
        self.decode_dtype = decode_dtype
        self.model.prepare_for_inference(None if decode_dtype == "none" else DTYPES[decode_dtype],
                                         small_max_t=1 + max_draft)
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
        self.cached_ids: list[int] = []  # tokens whose K/V are valid at positions 0..len-1
        self.edit_reuse, self.min_chunk = edit_reuse, min_chunk
        self._setup_pool(cache_mb, block_size)
        self._lock = threading.Lock()
        self._by_first_byte = index_by_first_byte(self.tokenizer.token_bytes, self.tokenizer.special_ids)
        self.max_draft = max_draft
        self._decode_fn = self.model
        self.static_decode = False
        self.compile_state = "off"  # off, compiling, compiled, failed: ...
        self.constant_sharing = None  # compiled on CPU: what the graphs share (shared_constants.Sharing)
        if mode == "on":
            self._compile_decode()
        costs = self._measure_step_costs()
        self.ngram_policy = DraftPolicy(costs)
        self.drafter = ModelDrafter(self, draft_model, costs) if draft_model else None
        self.load_ms = (time.perf_counter() - t0) * 1000
        self.compile_finished = threading.Event()  # set unless a background compile is still running
        if mode == "background":
            self.compile_state = "compiling"
            threading.Thread(target=self._compile_then_switch, name="completer-compile", daemon=True).start()
        else:
            self.compile_finished.set()

    def _compile_then_switch(self) -> None:
        """Background compile: requests run eager meanwhile (and keep clear of the cache positions
        the warm-up writes, see _usable_seq); the compiled step takes over between two requests."""
        t0 = time.perf_counter()
        try:
            fn, static = self._build_compiled_decode()
            freeze_loaded_objects()  # the graphs live as long as the engine (heap.py); a ~0.4 s pause, once
            with self._lock:
                self._decode_fn, self.static_decode = fn, static
                self.ngram_policy = DraftPolicy(self._measure_step_costs())
                if self.drafter is not None:  # its costs are relative to the target's step
                    self.drafter.policy = self.drafter.measured_policy(self, self.ngram_policy.cost)
                self.compile_state = "compiled"
            log.info("compiled decode step ready after %.1f s", time.perf_counter() - t0)
        except Exception as exc:  # slower, not broken: stay eager
            self.compile_state = f"failed: {type(exc).__name__}: {exc}"
            log.warning("compiling the decode step failed, staying eager: %s", exc)
        finally:
            self.compile_finished.set()

    def _usable_seq(self) -> int:
        """Cache positions requests may use: all, except the warm-up's while a compile runs."""
        return self.max_seq - (2 + self.max_draft) if self.compile_state == "compiling" else self.max_seq

    def _compile_decode(self, static: bool | None = None) -> None:
        """Compile now, before any request (--compile on)."""
        self._decode_fn, self.static_decode = self._build_compiled_decode(static)
        self.compile_state = "compiled"

    def _build_compiled_decode(self, static: bool | None = None):
        """torch.compile the decode-phase forward (1 + draft tokens; on CPU also prefill segments of
        up to COMPILED_SEGMENT_MAX tokens, see _forward); returns the step and whether it is the static
        form. Compiling takes 1.5-2 minutes on 2 CPU cores (Inductor benchmarks its GEMM choices);
        warm-up writes only the last cache positions, which requests leave alone.

        static (the default on CUDA): one fixed-shape graph per width (forward_static), captured as
        CUDA graphs, so a step is a single launch instead of ~60 small kernels. Otherwise (CPU):
        dynamic shapes over the exact cache length, with a C++ wrapper.
        """
        static = self.device.startswith("cuda") if static is None else static
        options = {"guard_filter_fn": keep_module_tensor_guards}
        if static:
            graphs = torch.compile(self.model.forward_static, fullgraph=True, dynamic=False,
                                   options={**options, "triton.cudagraphs": True})
            fn = self._decode_over_static(graphs)
        else:
            # The C++ wrapper calls the kernels without a Python frame per op: ~0.1-0.2 ms a step on CPU.
            fn = self._decode_by_shape({**options, "cpp_wrapper": self.device == "cpu"})
        # Every call shape the engine makes, so no request pays a recompile (seconds): decode and
        # verification (t tokens, t logits) and short prefill segments (t tokens, 1 logit; dynamo
        # specialises 1, so these are graphs of their own). Inductor compiles at these first calls.
        scratch = self.max_seq - (2 + self.max_draft)
        with torch.inference_mode(), self._inductor_settings(static):
            for t in range(1, self.max_draft + 2):
                for n in sorted({1, t}):
                    fn(torch.zeros((1, t), dtype=torch.long, device=self.device), start_pos=scratch, num_logits=n)
        return fn, static

    def _inductor_settings(self, static: bool):
        """On CPU: weights frozen into the graph as constants, so the matrix products can use
        Inductor's C++ GEMM template (max_autotune picks it where it beats the BLAS call). For the
        small widths of decoding the BLAS on this kind of CPU is slow, and the template reads each
        weight once for all t rows: a 5-token verification costs ~2x a 1-token step instead of ~3.5x,
        and the step itself is faster (BENCHMARKS.md). Costs a longer compile (~1.5 min on 2 cores).
        Global settings, not per-compile options: freezing is read outside the options' scope.
        The step, verification and segment graphs share one copy of the packed weights
        (shared_constants.py): with a copy each, switching graphs cost the next steps cache misses."""
        if static or self.device != "cpu":
            return contextlib.nullcontext()
        import torch._inductor.config as inductor_config
        settings = contextlib.ExitStack()
        settings.enter_context(inductor_config.patch(freezing=True, max_autotune=True,
                                                     max_autotune_gemm_backends="CPP,ATEN"))
        self.constant_sharing = settings.enter_context(shared_frozen_constants())
        return settings

    def _decode_by_shape(self, options: dict):
        """The forward(idx, start_pos, num_logits) signature over three compiled functions, one per
        kind of call: a 1-token step, a verification (t tokens, t logits) and a short prefill segment
        (t tokens, 1 logit). Dynamo keeps its graphs per code object and tries a call against them
        most recently used first: with one function, each 1-token step after a verification first
        failed the verification graph's guards. So each kind gets a code object of its own, made for
        this engine (so its graphs, which hold frozen weights, are never another engine's)."""
        model = self.model

        def call(idx: torch.Tensor, start_pos: int, num_logits: int) -> torch.Tensor:
            return model(idx, start_pos=start_pos, num_logits=num_logits)

        step, verify, segment = (
            torch.compile(types.FunctionType(call.__code__.replace(co_name=f"{kind}_{id(self):x}"), call.__globals__,
                                             kind, None, call.__closure__), dynamic=True, options=options)
            for kind in ("decode_step", "verify_draft", "prefill_segment"))

        def decode(idx: torch.Tensor, start_pos: int, num_logits: int) -> torch.Tensor:
            if idx.shape[1] == 1:
                return step(idx, start_pos, num_logits)
            return segment(idx, start_pos, num_logits) if num_logits == 1 else verify(idx, start_pos, num_logits)
        return decode

    def _decode_over_static(self, graphs):
        """The forward(idx, start_pos, num_logits) signature over forward_static."""
        cuda = self.device.startswith("cuda")

        def decode(idx: torch.Tensor, start_pos: int, num_logits: int) -> torch.Tensor:
            positions = torch.arange(start_pos, start_pos + idx.shape[1], device=idx.device)
            if cuda:
                # A new replay may reuse the previous one's output memory: the caller is done with it.
                torch.compiler.cudagraph_mark_step_begin()
            return graphs(idx, positions)[:, -num_logits:]
        return decode

    def _measure_step_costs(self, rounds: int = 15) -> list[float]:
        """What a (1 + k)-token verification costs relative to a 1-token step, k = 0..max_draft, at a
        typical prompt length (attention's share of a step, and so the ratios, depend on it; compiled
        on CPU they are not even monotonic in k). Measured as the extra time of a 1-token step that
        follows the verification: compiled on CPU each kind of call is its own graph, and switching
        graphs costs the next step some cache misses too (less since they share weights).

        The policy lives on these numbers, and this machine is shared: each round times every width
        back to back and gives one ratio per width, and the median over rounds is kept, so a noisy
        spell spoils rounds, not a width (measured one width at a time, a spike once made every
        verification look free). Called with the lock held or before serving."""
        start = min(COST_POSITION, self.max_seq - (2 + self.max_draft))
        del self.cached_ids[start:]  # the steps overwrite the K/V from there
        ratios: list[list[float]] = [[] for _ in range(self.max_draft + 1)]
        with torch.inference_mode():
            for round_ in range(rounds + 1):  # round 0 warms up
                times = []
                for k in range(self.max_draft + 1):
                    t0 = time.perf_counter()
                    self._forward([0] * (1 + k), start, 1 + k)
                    self._forward([0], start, 1)
                    if self.device.startswith("cuda"):
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
                if round_:
                    step = times[0] / 2
                    for k in range(1, self.max_draft + 1):
                        ratios[k].append(times[k] / step - 1)
        return [1.0] + [max(statistics.median(r), 1.0) for r in ratios[1:]]

    def describe(self) -> dict:
        cfg = self.model.config
        return {
            "backend": self.name, "device": self.device, "dtype": self.dtype, "model_dir": str(self.model_dir),
            "architecture": cfg.architecture, "parameters": self.params, "max_seq": self.max_seq,
            "decode_dtype": self.decode_dtype, "threads": self.threads,
            "long_prefill_threads": self.long_prefill_threads,
            "compiled": self._decode_fn is not self.model,
            "static_decode": self.static_decode, "compile": self.compile_state,
            "load_ms": round(self.load_ms, 1), "cache_mb": round(self.cache_mb, 1),
            "cache_blocks": self.prefix_cache.num_blocks if self.prefix_cache else 0, "block_size": self.block_size,
            "edit_reuse": self.edit_reuse, "can_heal": self.can_heal,
            "reused_constant_mb": round(self.constant_sharing.reused_bytes / 2**20, 1) if self.constant_sharing else 0,
        }

    def _setup_pool(self, cache_mb: float, block_size: int) -> None:
        cfg, cache = self.model.config, self.model.model.layers[0].self_attn.kv_cache
        # pool_k, pool_v: [layers, blocks, kv_heads, block_size, head_dim], allocated once
        per_block = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * block_size * cfg.head_dim * cache.k.element_size()
        blocks = int(cache_mb * 2**20 // per_block)
        self.block_size = block_size
        self.prefix_cache = PrefixCache(blocks, block_size) if blocks > 0 else None
        shape = (cfg.num_hidden_layers, max(blocks, 0), cfg.num_key_value_heads, block_size, cfg.head_dim)
        self.pool_k = torch.zeros(shape, dtype=cache.k.dtype, device=self.device)
        self.pool_v = torch.zeros(shape, dtype=cache.k.dtype, device=self.device)
        self.cache_mb = blocks * per_block / 2**20

    def _restore_blocks(self, block_ids: list[int], first_block: int) -> None:
        """Copy pool blocks into the slot, block i of the list at sequence block first_block + i."""
        bs, n = self.block_size, len(block_ids)
        start, end = first_block * bs, (first_block + n) * bs
        ids = torch.tensor(block_ids, device=self.device)
        for i, layer in enumerate(self.model.model.layers):
            cache = layer.self_attn.kv_cache
            # [n, kv, bs, hd] -> [kv, n * bs, hd]
            cache.k[0, :, start:end] = self.pool_k[i, ids].transpose(0, 1).reshape(cache.k.shape[1], n * bs, -1)
            cache.v[0, :, start:end] = self.pool_v[i, ids].transpose(0, 1).reshape(cache.v.shape[1], n * bs, -1)

    def _save_blocks(self, new: list[tuple[int, int]]) -> None:
        """Copy slot blocks into the pool: (sequence block index, pool block id) pairs."""
        if not new:
            return
        bs = self.block_size
        end = (max(index for index, _ in new) + 1) * bs
        seq_blocks = torch.tensor([index for index, _ in new], device=self.device)
        ids = torch.tensor([block_id for _, block_id in new], device=self.device)
        for i, layer in enumerate(self.model.model.layers):
            cache = layer.self_attn.kv_cache
            kv = cache.k.shape[1]
            # slot [kv, end, hd] viewed as [kv, end / bs, bs, hd]; pool wants [blocks, kv, bs, hd]
            self.pool_k[i, ids] = cache.k[0, :, :end].view(kv, -1, bs, cache.k.shape[-1])[:, seq_blocks].transpose(0, 1)
            self.pool_v[i, ids] = cache.v[0, :, :end].view(kv, -1, bs, cache.v.shape[-1])[:, seq_blocks].transpose(0, 1)

    def _move_chunks(self, chunks: list[tuple[int, int, int]]) -> None:
        """Move slot K/V chunks (old position, new position, length) to their new positions, keys
        re-rotated by the shift. Every source is read before any destination is written."""
        cfg = self.model.config
        for layer in self.model.model.layers:
            cache = layer.self_attn.kv_cache
            moved = [(new, n, old - new, cache.k[0, :, old:old + n].clone(), cache.v[0, :, old:old + n].clone())
                     for old, new, n in chunks]
            for new, n, back, k, v in moved:
                cache.k[0, :, new:new + n] = rerotate_keys(k, cfg, -back)
                cache.v[0, :, new:new + n] = v

    def close(self) -> None:
        """Forget every cached K/V (slot and pool)."""
        self.cached_ids = []
        if self.prefix_cache is not None:
            self.prefix_cache.clear()

    def generate(self, request: GenerationRequest, cancel: threading.Event | None = None) -> GenerationStream:
        stats = GenerationStats(prompt_tokens=len(request.prompt_ids))
        return GenerationStream(self._run(request, cancel or threading.Event(), stats), stats)

    # -- internals -------------------------------------------------------------------------------

    def _forward(self, ids: list[int], start: int, num_logits: int) -> torch.Tensor:
        idx = torch.tensor([ids], dtype=torch.long, device=self.device)
        # The dynamic-shape prefill-segment graph takes any width; fixed-shape graphs only theirs.
        compiled_max = 1 + self.max_draft if self.static_decode or num_logits > 1 else COMPILED_SEGMENT_MAX
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

    def _propose(self, ngrams, drafter, context, constraint, sampler, room):
        """(draft tokens, the policy to inform and its key, shadow) for the next step. N-gram drafts
        are keyed by the length of their match. The shadow (token, key) is an n-gram draft token not
        worth verifying, checked against the real next token: free learning."""
        shadow = None
        if room <= 0 or (constraint is not None and not constraint.done):
            return [], None, None, None
        if ngrams is not None:
            candidates, match = ngrams.lookup(room)
            if candidates:
                k = self.ngram_policy.length(len(candidates), match)
                if k:
                    return candidates[:k], self.ngram_policy, match, None
                shadow = (candidates[0], match)
        if drafter is not None:
            k = drafter.policy.length(room)
            if k:
                return drafter.propose(context, k, sampler), drafter.policy, None, shadow
        return [], None, None, shadow

    def _run(self, req: GenerationRequest, cancel: threading.Event, stats: GenerationStats):
        with self._lock, torch.inference_mode():
            yield from self._run_locked(req, cancel, stats)

    def _prefill(self, prompt: list[int], req: GenerationRequest, stats: GenerationStats) -> torch.Tensor:
        """Make the slot hold K/V for the whole prompt, computing as little as possible; returns the
        logits after its last token."""
        # Prefill only past the longest cached prefix; at least one token runs to produce logits.
        reuse = common_prefix_len(self.cached_ids, prompt) if req.use_cache else 0
        pool = self.prefix_cache if req.use_cache else None
        if pool is not None:
            blocks = pool.match(prompt, req.session_key)
            covered = min(len(blocks) * self.block_size, len(prompt) - 1)
            if covered > reuse:  # the pool knows more of this prompt than the slot: copy it in
                first = reuse // self.block_size
                del self.cached_ids[first * self.block_size:]
                self._restore_blocks(blocks[first:], first)
                self.cached_ids.extend(prompt[first * self.block_size:len(blocks) * self.block_size])
                stats.restored_tokens = covered - first * self.block_size
                reuse = covered
        reuse = min(reuse, len(prompt) - 1)
        edit_reuse = self.edit_reuse if req.edit_reuse is None else req.edit_reuse
        chunks = plan_edit_reuse(self.cached_ids, prompt, reuse, self.min_chunk) if req.use_cache and edit_reuse else []
        if chunks:
            self._move_chunks(chunks)
            stats.shifted_tokens = sum(n for _, _, n in chunks)
        del self.cached_ids[reuse:]
        # Compute what is neither reused nor moved, left to right; the last segment yields the logits.
        computed = 0
        for seg_start, seg_end in uncovered(reuse, len(prompt), chunks):
            logits = self._forward(prompt[seg_start:seg_end], seg_start, 1)[-1]
            stats.forward_passes += 1
            computed += seg_end - seg_start
        self.cached_ids.extend(prompt[reuse:])
        stats.cached_tokens, stats.prefill_tokens = len(prompt) - computed, computed
        if pool is not None:  # only the exact prefix: moved chunks are approximations
            exact = chunks[0][1] if chunks else len(prompt)
            self._save_blocks(pool.insert(prompt[:exact], req.session_key))
        return logits

    def _run_locked(self, req: GenerationRequest, cancel: threading.Event, stats: GenerationStats):
        t_start = time.perf_counter()
        prompt = list(req.prompt_ids)
        if not prompt:
            raise ValueError("empty prompt")
        limit = self._usable_seq()
        if len(prompt) >= limit:
            raise ValueError(f"prompt of {len(prompt)} tokens does not fit the {limit}-token cache")
        max_new = min(req.max_new_tokens, limit - len(prompt))

        logits = self._prefill(prompt, req, stats)
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

            # Feed the last chosen token, plus a draft when one pays for itself: n-gram lookup first
            # (free), else the draft model.
            last = new_ids[-1]
            draft, policy, key, shadow = self._propose(ngrams, drafter, context, constraint, sampler,
                                                       min(self.max_draft, limit - pos - 2,
                                                           max_new - stats.decode_tokens - 1))
            rows = self._forward([last] + draft, pos, 1 + len(draft))
            stats.forward_passes += 1
            self.cached_ids.append(last)
            pos += 1
            pending = verify_draft(rows, draft, sampler, pos)
            if draft:
                accepted = len(pending) - 1  # the last token is the target's own (correction or bonus)
                # Accepted draft tokens now have valid K/V; the rest are stale and get overwritten.
                self.cached_ids.extend(draft[:accepted])
                pos += accepted
                stats.drafted_tokens += len(draft)
                stats.accepted_tokens += accepted
                policy.observe(accepted, len(draft), key)
            if shadow is not None:
                self.ngram_policy.observe(int(pending[0] == shadow[0]), 1, shadow[1])

        if finish != "cancelled":
            tail = shaper.flush()  # text held back in case a stop string or block end would cut it
            if tail is not None and tail.text:
                yield tail
        stats.finish_reason = finish
        stats.decode_ms = (time.perf_counter() - t_decode) * 1000


class ModelDrafter:
    """A small draft model proposing k tokens for the target to verify in one pass.

    It keeps its own working slot: before proposing it feeds whatever of the context it has not
    seen (longest common prefix with what it has, so rejected proposals roll back by themselves).
    Its policy weighs k draft steps plus the wider verification against plain decoding.
    """

    def __init__(self, engine: TorchEngine, model_dir: str | Path, target_costs: list[float]):
        from completer.engines.model_dirs import resolve_model

        model_dir = resolve_model(str(model_dir))
        self.device = engine.device
        self.model = load_model(model_dir, device=engine.device, dtype=engine.model.model.norm.weight.dtype)
        tok = Tokenizer(model_dir)
        if tok.token_bytes != engine.tokenizer.token_bytes:
            raise ValueError(f"draft model {model_dir} does not share the target's tokenizer")
        self.model_dir = model_dir
        small = None if engine.decode_dtype == "none" else DTYPES[engine.decode_dtype]
        self.model.prepare_for_inference(small, small_max_t=1 + engine.max_draft)
        self.model.setup_cache(engine.max_seq)
        self.cached_ids: list[int] = []
        self.policy = self.measured_policy(engine, target_costs)

    def measured_policy(self, engine: TorchEngine, target_costs: list[float]) -> DraftPolicy:
        """A fresh policy from the cost of drafting k tokens and verifying them, relative to one
        plain target step (again when the target's step changes: after a background compile)."""
        scratch = engine.max_seq - (2 + engine.max_draft)
        del self.cached_ids[scratch:], engine.cached_ids[scratch:]  # both slots get overwritten there
        step = measure_step(self._forward, scratch, 1, self.device) / measure_step(engine._forward, scratch, 1, self.device)
        return DraftPolicy([target_costs[k] + k * step for k in range(len(target_costs))])

    def _forward(self, ids: list[int], start: int, num_logits: int) -> torch.Tensor:
        idx = torch.tensor([ids], dtype=torch.long, device=self.device)
        return self.model(idx, start_pos=start, num_logits=num_logits)[0]

    def propose(self, context: list[int], k: int, sampler: Sampler) -> list[int]:
        """k tokens after `context`, chosen like the target would (same sampler, same noise)."""
        reuse = min(common_prefix_len(self.cached_ids, context), len(context) - 1)
        del self.cached_ids[reuse:]
        logits = self._forward(context[reuse:], reuse, 1)[-1]
        self.cached_ids.extend(context[reuse:])
        tokens = []
        for i in range(k):
            t = sampler.pick(logits, len(context) + i)
            tokens.append(t)
            if i + 1 < k:
                logits = self._forward([t], len(self.cached_ids), 1)[-1]
                self.cached_ids.append(t)
        return tokens
