"""torch.compile of the engine's decode-phase forward.

Decode-phase calls (1 token, 1 + a draft) and prefill segments of up to COMPILED_SEGMENT_MAX tokens
can run compiled: dynamic shapes and frozen weights on CPU, fixed-shape CUDA graphs on CUDA
(Transformer.forward_static, decode widths only); longer prefills stay eager. Compiling takes one to
two minutes on CPU, so it can happen in a background thread while requests run eager (mode
"background"); the engine hands over a callback that swaps the compiled step in under its lock.

Every compiled step keeps the signature forward(idx [1, T], start_pos, num_logits) -> logits
[1, num_logits, vocab] of Transformer.forward, so the engine calls whichever it has the same way.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import types
from collections.abc import Callable

import torch

from completer.engines.heap import freeze_loaded_objects
from completer.engines.options import COMPILE_MODES
from completer.engines.private_cache import use_private_compile_caches

from .frozen_constants import Sharing, shared_frozen_constants
from .model import Transformer

log = logging.getLogger(__name__)

# Prefill segments up to this many tokens run the compiled segment graph (CPU): eager costs ~7 ms a
# forward in per-op overhead alone, compiled 2.5 ms for 6 tokens, 4.6 for 32, 30 for 256 (eager 38).
# Longer prompts prefill eager, where the BLAS handles large products well.
COMPILED_SEGMENT_MAX = 256
# The dynamic-shape verification graph (t tokens, t logits) also scores candidate suggestions in one
# call each (engine.score): widths past the drafts' were measured to run without recompiling.
COMPILED_SCORE_MAX = 32

Step = Callable[..., torch.Tensor]  # step(idx, start_pos=, num_logits=) -> [1, num_logits, vocab]


def resolve_compile_mode(compile: bool | str, device: str) -> str:
    """off, on or background (options.COMPILE_MODES; True is on). auto: background on CPU, off on
    CUDA (not yet measured on a GPU)."""
    mode = ("on" if compile else "off") if isinstance(compile, bool) else compile
    if mode not in COMPILE_MODES:
        raise ValueError(f"unknown compile mode {compile!r} (one of {', '.join(COMPILE_MODES)})")
    if mode == "auto":
        mode = "background" if device == "cpu" else "off"
    return mode


def scratch_start(max_seq: int, max_draft: int) -> int:
    """First of the cache positions that warm-ups and cost measurements write: the last 2 + max_draft.
    Requests keep clear of them while a background compile runs (Compiler.usable_seq)."""
    return max_seq - (2 + max_draft)


def keep_module_tensor_guards(entries) -> list[bool]:
    """Which of dynamo's guards a compiled decode step checks. All of them take ~0.2 ms per call on
    this CPU, a seventh of a decode step; those on module attributes (types, dicts, hooks) can go,
    since our modules never change after loading (K/V buffers are written in place, never replaced),
    which saves about a quarter of that. Kept: all guards outside the modules, and the shape/dtype and
    constant guards inside them, so another model compiled in the same process (a configuration
    reload) never runs this one's graphs (a test)."""
    kinds = ("TENSOR_MATCH", "EQUALS_MATCH", "CONSTANT_MATCH")
    return [not e.orig_guard.source.is_unspecialized_nn_module() or e.guard_type in kinds for e in entries]


def decode_by_shape(model: Transformer, options: dict) -> Step:
    """The forward(idx, start_pos, num_logits) signature over three compiled functions, one per
    kind of call: a 1-token step, a verification (t tokens, t logits) and a short prefill segment
    (t tokens, 1 logit). Dynamo keeps its graphs per code object and tries a call against them
    most recently used first: with one function, each 1-token step after a verification first
    failed the verification graph's guards. So each kind gets a code object of its own, made for
    this model (so its graphs, which hold frozen weights, are never another engine's)."""

    def call(idx: torch.Tensor, start_pos: int, num_logits: int) -> torch.Tensor:
        return model(idx, start_pos=start_pos, num_logits=num_logits)

    step, verify, segment = (
        torch.compile(types.FunctionType(call.__code__.replace(co_name=f"{kind}_{id(model):x}"), call.__globals__,
                                         kind, None, call.__closure__), dynamic=True, options=options)
        for kind in ("decode_step", "verify_draft", "prefill_segment"))

    def decode(idx: torch.Tensor, start_pos: int, num_logits: int) -> torch.Tensor:
        if idx.shape[1] == 1:
            return step(idx, start_pos, num_logits)
        return segment(idx, start_pos, num_logits) if num_logits == 1 else verify(idx, start_pos, num_logits)
    return decode


def decode_over_static(graphs, device: str) -> Step:
    """The forward(idx, start_pos, num_logits) signature over forward_static (compiled or not)."""
    cuda = device.startswith("cuda")

    def decode(idx: torch.Tensor, start_pos: int, num_logits: int) -> torch.Tensor:
        positions = torch.arange(start_pos, start_pos + idx.shape[1], device=idx.device)
        if cuda:
            # A new replay may reuse the previous one's output memory: the caller is done with it.
            torch.compiler.cudagraph_mark_step_begin()
        return graphs(idx, positions)[:, -num_logits:]
    return decode


class Compiler:
    """Compiles one model's decode step, now or in a background thread, and says how far it got.

    state: "off", "compiling", "compiled" or "failed: <error>" (the engine then stays eager);
    finished: set unless a background compile is still running.
    """

    def __init__(self, model: Transformer, device: str, max_seq: int, max_draft: int):
        self.model, self.device, self.max_seq, self.max_draft = model, device, max_seq, max_draft
        self.state = "off"
        self.finished = threading.Event()
        self.sharing: Sharing | None = None  # compiled on CPU: what the graphs share

    def usable_seq(self) -> int:
        """Cache positions requests may use: all, except the warm-up's while a compile runs."""
        return scratch_start(self.max_seq, self.max_draft) if self.state == "compiling" else self.max_seq

    def compile_now(self, static: bool | None = None) -> tuple[Step, bool]:
        """Compile before any request (--compile on): the step and whether it is the static form."""
        step, static = self.build(static)
        self.state = "compiled"
        return step, static

    def start_background(self, switch: Callable[[Step, bool], None], lock: threading.Lock) -> None:
        """Compile in a thread while requests run eager, keeping clear of the cache positions the
        warm-up writes (usable_seq); then call switch(step, static) holding `lock`, the engine's
        request lock, so the compiled step takes over between two requests."""
        self.state = "compiling"
        threading.Thread(target=self._compile_then_switch, args=(switch, lock), name="completer-compile",
                         daemon=True).start()

    def _compile_then_switch(self, switch: Callable[[Step, bool], None], lock: threading.Lock) -> None:
        t0 = time.perf_counter()
        try:
            step, static = self.build()
            freeze_loaded_objects()  # the graphs live as long as the engine (heap.py); a ~0.4 s pause, once
            with lock:
                switch(step, static)
                self.state = "compiled"
            log.info("compiled decode step ready after %.1f s", time.perf_counter() - t0)
        except Exception as exc:  # slower, not broken: stay eager
            self.state = f"failed: {type(exc).__name__}: {exc}"
            log.warning("compiling the decode step failed, staying eager: %s", exc)
        finally:
            self.finished.set()

    def build(self, static: bool | None = None) -> tuple[Step, bool]:
        """torch.compile the decode-phase forward (1 + draft tokens; on CPU also prefill segments of
        up to COMPILED_SEGMENT_MAX tokens, see TorchEngine._forward); returns the step and whether it
        is the static form. Compiling takes 1.5-2 minutes on 2 CPU cores (Inductor benchmarks its GEMM
        choices); warm-up writes only the last cache positions, which requests leave alone.

        static (the default on CUDA): one fixed-shape graph per width (forward_static), captured as
        CUDA graphs, so a step is a single launch instead of ~60 small kernels. Otherwise (CPU):
        dynamic shapes over the exact cache length, with a C++ wrapper.
        """
        use_private_compile_caches()  # never /tmp/torchinductor_<user>: what is there gets loaded back
        static = self.device.startswith("cuda") if static is None else static
        options = {"guard_filter_fn": keep_module_tensor_guards}
        if static:
            graphs = torch.compile(self.model.forward_static, fullgraph=True, dynamic=False,
                                   options={**options, "triton.cudagraphs": True})
            fn = decode_over_static(graphs, self.device)
        else:
            # The C++ wrapper calls the kernels without a Python frame per op: ~0.1-0.2 ms a step on CPU.
            fn = decode_by_shape(self.model, {**options, "cpp_wrapper": self.device == "cpu"})
        # Every call shape the engine makes, so no request pays a recompile (seconds): decode and
        # verification (t tokens, t logits) and short prefill segments (t tokens, 1 logit; dynamo
        # specialises 1, so these are graphs of their own). Inductor compiles at these first calls.
        scratch = scratch_start(self.max_seq, self.max_draft)
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
        (frozen_constants.py): with a copy each, switching graphs cost the next steps cache misses."""
        if static or self.device != "cpu":
            return contextlib.nullcontext()
        import torch._inductor.config as inductor_config
        settings = contextlib.ExitStack()
        settings.enter_context(inductor_config.patch(freezing=True, max_autotune=True,
                                                     max_autotune_gemm_backends="CPP,ATEN"))
        self.sharing = settings.enter_context(shared_frozen_constants())
        return settings
