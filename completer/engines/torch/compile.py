"""Compiling the engine's decode-phase forward: AOTInductor packages on CPU, CUDA graphs on CUDA.

Decode-phase calls (1 token, 1 + a draft, a candidate's tokens to score) and prefill segments of up
to COMPILED_SEGMENT_MAX tokens run compiled; longer prefills stay eager.

- CPU: the packages of aot.py, built once per model and machine by a separate process and loaded in
  milliseconds from the private cache; dynamic shapes, frozen weights, every width inside the graphs'
  ranges, so no request ever compiles.
- CUDA: torch.compile of Transformer.forward_static, one fixed-shape graph per decode width and per
  prefill bucket (calls padded up to it), each captured as a CUDA graph (a step is one launch instead
  of ~60 small kernels), compiled in this process.

Either can happen in the background while requests run eager (mode "background"); the engine hands
over a callback that swaps the compiled step in under its lock. Every compiled step keeps the
signature forward(idx [1, T], start_pos, num_logits) -> logits [1, num_logits, vocab] of
Transformer.forward, so the engine calls whichever it has the same way.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from completer.engines.heap import freeze_loaded_objects
from completer.engines.options import COMPILE_MODES
from completer.engines.private_cache import use_private_compile_caches

from . import aot
from .aot import COMPILED_SCORE_MAX, COMPILED_SEGMENT_MAX  # noqa: F401 (the engine's widths)
from .model import Transformer

log = logging.getLogger(__name__)

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


# Fixed-shape prefill widths (CUDA): a prefill segment or a candidate to score runs the smallest graph
# that holds it, padded. On a GPU a forward's cost hardly depends on the token count at these sizes
# (launch-bound), so three buckets keep the graph count (and the start-up compile) small.
PREFILL_BUCKETS = (16, 64, 256)


def static_widths(max_draft: int, max_seq: int) -> tuple[int, ...]:
    """The token counts the fixed-shape step has graphs for: every decode width (1 + a draft of up to
    max_draft), exact, then the prefill buckets that fit the cache."""
    return tuple(sorted({*range(1, max_draft + 2), *(b for b in PREFILL_BUCKETS if b < max_seq)}))


class StaticStep:
    """forward(idx, start_pos, num_logits) over forward_static's fixed-shape graphs (compiled or not).

    A call of T tokens runs the graph of the smallest width >= T: the padding tokens go to
    pad_position, the cache's last position, which requests never use (Compiler.usable_seq), so their
    K/V are written where no real token can see them (a query at p sees keys 0..p) and nothing a
    request keeps is overwritten; their rows are dropped."""

    def __init__(self, graphs, device: str, widths: tuple[int, ...], pad_position: int):
        self.graphs, self.widths, self.pad_position = graphs, widths, pad_position
        self.device, self.cuda = device, device.startswith("cuda")

    @property
    def max_width(self) -> int:
        return self.widths[-1]

    def width_for(self, t: int) -> int:
        return next(w for w in self.widths if w >= t)

    def __call__(self, idx: torch.Tensor, start_pos: int, num_logits: int) -> torch.Tensor:
        t = idx.shape[1]
        width = self.width_for(t)  # StopIteration past max_width: the engine runs those eager
        positions = torch.arange(start_pos, start_pos + t, device=idx.device)
        if width > t:
            idx = torch.cat([idx, idx.new_zeros((1, width - t))], dim=1)
            positions = torch.cat([positions, positions.new_full((width - t,), self.pad_position)])
        if self.cuda:
            # A new replay may reuse the previous one's output memory: the caller is done with it.
            torch.compiler.cudagraph_mark_step_begin()
        return self.graphs(idx, positions)[:, t - num_logits:t]

    def warm_up(self) -> None:
        """One call per width, every position the pad position (nothing a request uses is written):
        compiles (and on CUDA captures) each graph before a request needs it."""
        for width in self.widths:
            idx = torch.zeros((1, width), dtype=torch.long, device=self.device)
            if self.cuda:
                torch.compiler.cudagraph_mark_step_begin()
            self.graphs(idx, torch.full((width,), self.pad_position, dtype=torch.long, device=idx.device))


class Compiler:
    """Compiles one model's decode step, now or in the background, and says how far it got.

    state: "off", "compiling", "compiled" or "failed: <error>" (the engine then stays eager);
    finished: set unless a background compile is still running.
    On CPU (unless static is asked for), compiling means loading the model's packages from the cache
    (aot.py), after building them in a separate process if they are not there yet.
    """

    def __init__(self, model: Transformer, device: str, max_seq: int, max_draft: int,
                 model_dir: Path | None = None, dtype: str = "float32", threads: int | None = None):
        self.model, self.device, self.max_seq, self.max_draft = model, device, max_seq, max_draft
        self.model_dir, self.dtype, self.threads = model_dir, dtype, threads
        self.state = "off"
        self.finished = threading.Event()
        self.in_process = False  # a compile warming up at the scratch positions in this process
        # The fixed-shape step (CUDA) pads its calls to its widths at the cache's last position, so
        # requests keep off it from the start (a request there could later be read back as a prefix).
        self.pad_position = max_seq - 1 if device.startswith("cuda") else None
        self._entry: aot.Entry | None = None

    @property
    def uses_packages(self) -> bool:
        return self.device == "cpu" and self.model_dir is not None

    def entry(self) -> aot.Entry:
        """This model's place in the compiled-engine cache (hashes the model's files once)."""
        if self._entry is None:
            self._entry = aot.Entry.for_model(self.model_dir, self.dtype, self.max_seq,
                                              self.threads or torch.get_num_threads())
        return self._entry

    def entry_path(self) -> str | None:
        """Where this engine's packages are (once looked up), for describe()."""
        return str(self._entry.path) if self._entry is not None else None

    def load_cached(self) -> Step | None:
        """The CPU's packages loaded from the cache, if it has them and they pass their checks (state
        "compiled"); None otherwise (a rejected entry is removed: a background build makes it again)."""
        if not self.uses_packages or self.entry().state() != "ready":
            return None
        try:
            step = aot.load_step(self.model, self.entry(), scratch_start(self.max_seq, self.max_draft))
        except aot.StaleEntry as exc:
            log.warning("compiled engine cache entry rejected (%s): building it again in the background", exc)
            return None
        self.state = "compiled"
        return step

    def usable_seq(self) -> int:
        """Cache positions requests may use: all but the fixed-shape step's pad position, and not the
        warm-up's while a compile in this process runs (a package build runs in its own process and
        writes nothing here)."""
        if self.in_process:
            return scratch_start(self.max_seq, self.max_draft)
        return self.max_seq - 1 if self.pad_position is not None else self.max_seq

    def compile_now(self, static: bool | None = None) -> tuple[Step, bool]:
        """Compile before any request (--compile on, or packages already built): the step and
        whether it is the static form."""
        step, static = self.build(static)
        self.state = "compiled"
        return step, static

    def start_background(self, switch: Callable[[Step, bool], None], lock: threading.Lock) -> None:
        """Compile in a thread while requests run eager; then call switch(step, static) holding
        `lock`, the engine's request lock, so the compiled step takes over between two requests.
        Packages are built outside the lock and loaded under it (loading checks them against the
        eager model at the scratch positions); an in-process compile warms up at the scratch
        positions, which requests leave alone meanwhile (usable_seq)."""
        self.state = "compiling"
        self.in_process = not self.uses_packages
        threading.Thread(target=self._compile_then_switch, args=(switch, lock), name="completer-compile",
                         daemon=True).start()

    def _compile_then_switch(self, switch: Callable[[Step, bool], None], lock: threading.Lock) -> None:
        t0 = time.perf_counter()
        try:
            step, static = (self._load_packages(lock), False) if self.uses_packages else self.build()
            freeze_loaded_objects()  # the graphs live as long as the engine (heap.py); a short pause, once
            with lock:
                switch(step, static)
                self.state = "compiled"
                self.in_process = False
            log.info("compiled decode step ready after %.1f s", time.perf_counter() - t0)
        except Exception as exc:  # slower, not broken: stay eager
            self.state = f"failed: {type(exc).__name__}: {exc}"
            self.in_process = False
            log.warning("compiling the decode step failed, staying eager: %s", exc)
        finally:
            self.finished.set()

    def _load_packages(self, lock=contextlib.nullcontext()) -> Step:
        """The CPU's packages: built if the cache lacks them (outside `lock`, the request lock in the
        background), then loaded under it (the load probes the scratch positions); an entry rejected
        at load is built once more and loaded again."""
        scratch = scratch_start(self.max_seq, self.max_draft)
        self.prepare_packages()
        with lock:
            try:
                return aot.load_step(self.model, self.entry(), scratch)
            except aot.StaleEntry as exc:
                log.warning("compiled engine cache entry rejected (%s): building it again", exc)
        self.prepare_packages()  # the rejected entry is gone: built again, once
        with lock:
            return aot.load_step(self.model, self.entry(), scratch)

    def prepare_packages(self) -> None:
        """Build this model's packages unless the cache has them (a separate, niced process; this
        thread waits without holding the interpreter lock)."""
        entry = self.entry()
        if entry.state() != "ready":
            log.info("building the compiled engine %s in %s", entry.key, entry.path)
            aot.build_in_subprocess(entry, self.model_dir, self.dtype, self.max_seq,
                                    self.threads or torch.get_num_threads())

    def build(self, static: bool | None = None) -> tuple[Step, bool]:
        """The compiled decode-phase forward and whether it is the static form.

        CPU (static unset): the packages (_load_packages: built unless cached, loaded over this
        model's K/V and checked against it at the scratch positions).

        static (the default on CUDA): torch.compile of forward_static, one fixed-shape graph per
        width (static_widths: the decode widths and the prefill buckets), captured as CUDA graphs, so
        a step is a single launch instead of ~60 small kernels. Warm-up writes only the pad position.
        """
        static = self.device.startswith("cuda") if static is None else static
        if not static and self.uses_packages:
            return self._load_packages(), False
        if not static:
            raise RuntimeError("the dynamic-shape compiled step is built as packages on CPU only "
                               "(CUDA compiles the fixed-shape step)")
        use_private_compile_caches()  # never /tmp/torchinductor_<user>: what is there gets loaded back
        graphs = torch.compile(self.model.forward_static, fullgraph=True, dynamic=False,
                               options={"guard_filter_fn": keep_module_tensor_guards, "triton.cudagraphs": True})
        if self.pad_position is None:  # static on CPU (tests): reserve the pad position from now on
            self.pad_position = self.max_seq - 1
        step = StaticStep(graphs, self.device, static_widths(self.max_draft, self.max_seq), self.pad_position)
        with torch.inference_mode():
            step.warm_up()  # every width compiled (and captured) now: no request pays a compile (seconds)
        return step, static
