"""What the in-process GPU backends (trtllm.py, lmdeploy.py) share: the guarded import of their
package, one asyncio loop on a daemon thread (their streaming APIs need a running loop), the relay
that hands a pump's outputs through the OutputShaper to the caller's thread, and CUDA device choice.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib
import logging
import os
import queue
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from completer.tokenizer import Tokenizer

from .contract import (
    BackendUnavailableError,
    GenerationRequest,
    GenerationStats,
    GenerationStream,
    ScoreRequest,
)
from .shaper import OutputShaper

log = logging.getLogger(__name__)

DEFAULT_MAX_SEQ = 8192  # completion prompts are a few thousand tokens: no KV budget for 32k contexts
POLL_S = 0.002  # how often the caller's thread checks cancel and deadline while it waits for output
ABORT_WAIT_S = 2.0  # bound on waiting for the loop thread to run an abort
OUTPUT, ERROR, END = "output", "error", "end"  # kinds of items a loop-thread pump hands over


def import_backend(package: str, module: str, attribute: str, *, missing: str, written_for: str, needs: str):
    """(the package, `attribute` of `module`) for an in-process GPU backend; every way the import can
    fail becomes a BackendUnavailableError saying what to do. `missing`: the message when the package
    is not installed; `written_for`: the release whose API we drive; `needs`: what a failing
    dependency usually means."""
    try:
        root = importlib.import_module(package)
        target = getattr(importlib.import_module(module), attribute)
    except ModuleNotFoundError as exc:
        if exc.name == package:
            raise BackendUnavailableError(missing) from None
        if (exc.name or "").startswith(package + "."):
            raise BackendUnavailableError(f"{package} has no {exc.name}: this backend is written for "
                                          f"{written_for}") from None
        raise BackendUnavailableError(f"{package} failed to import: {exc} (a dependency is missing; it needs "
                                      f"{needs})") from None
    except AttributeError:
        raise BackendUnavailableError(f"{module} has no {attribute}: this backend is written for "
                                      f"{written_for}") from None
    except (ImportError, OSError) as exc:
        raise BackendUnavailableError(f"{package} failed to import: {exc} (it needs an NVIDIA GPU with its "
                                      "driver and CUDA libraries)") from None
    return root, target


class EventLoopThread:
    """One asyncio loop on a daemon thread, for engines whose async APIs need a running loop."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def submit(self, coro) -> concurrent.futures.Future:
        """Schedule a coroutine; coroutines submitted from one thread start in submission order."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro, timeout: float | None = None):
        return self.submit(coro).result(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel what still runs on the loop, then stop and close it."""
        if self.loop.is_closed():
            return
        if self._thread.is_alive():
            try:
                self.call(_cancel_other_tasks(), timeout)
            except (concurrent.futures.TimeoutError, RuntimeError):
                log.warning("event loop %s: tasks did not finish within %.1fs of cancelling", self._thread.name,
                            timeout)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()


async def _cancel_other_tasks() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=2.0)
    await asyncio.get_running_loop().shutdown_asyncgens()


def next_item(items: queue.SimpleQueue, shaper: OutputShaper, cancel: threading.Event):
    """The next (kind, value) a pump handed over, or None once cancel or the deadline ends the request
    while we wait (checked every POLL_S)."""
    while True:
        try:
            return items.get(timeout=POLL_S)
        except queue.Empty:
            if shaper.check(cancel):
                return None


@dataclass
class Relay:
    """What the caller's thread learnt from a pump; its `finally` reads it even after an exception."""
    backend_finish: str = ""
    ended: bool = False  # the backend's request is over: nothing to abort
    t_first: float | None = None
    outputs: int = 0  # streamed outputs other than a cancellation notice (one engine iteration each)
    produced: int = 0  # tokens the engine generated, a returned-less stop id included


def relay(items: queue.SimpleQueue, shaper: OutputShaper, cancel: threading.Event, stats: GenerationStats,
          t_start: float, state: Relay):
    """Hand a pump's outputs (ids, finish_reason, cached tokens) through the shaper as deltas until the
    backend or our side ends the request; then the text the shaper held back."""
    while True:
        item = next_item(items, shaper, cancel)
        if item is None:
            break
        kind, value = item
        if kind in (END, ERROR):
            state.ended = True
            if kind == ERROR:
                raise value
            break
        ids, finish, cached = value
        if state.t_first is None:
            state.t_first = time.perf_counter()
            stats.prefill_ms = (state.t_first - t_start) * 1000
        stats.cached_tokens = max(stats.cached_tokens, cached)
        state.outputs += finish != "cancelled"
        state.produced += len(ids) + (finish == "stop")
        if ids:
            delta = shaper.add_tokens(ids)
            if delta is not None:
                yield delta
        if finish:
            state.backend_finish, state.ended = finish, True
            break
        if shaper.finish or shaper.check(cancel):
            break
    if shaper.finish != "cancelled":
        tail = shaper.flush()  # text held back in case a stop string or block end would cut it
        if tail is not None and tail.text:
            yield tail


def select_cuda_device(device: str, backend: str) -> str:
    """'auto' / 'cuda' / 'cuda:N'. These engines place themselves on the first visible GPU, so cuda:N
    narrows CUDA_VISIBLE_DEVICES to GPU N, which only works before CUDA is initialised here."""
    if device in ("auto", "cuda", "cuda:0"):
        return "cuda" if device == "auto" else device
    index = device[5:] if device.startswith("cuda:") else ""
    if not index.isdigit():
        raise BackendUnavailableError(f"{backend} runs on NVIDIA GPUs only: device {device!r} is not supported "
                                      "(use auto, cuda or cuda:N)")
    import torch

    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [v.strip() for v in visible.split(",") if v.strip()] if visible else None
    if ids is not None and int(index) >= len(ids):
        raise BackendUnavailableError(f"device {device!r}: CUDA_VISIBLE_DEVICES={visible} shows {len(ids)} GPU(s)")
    if torch.cuda.is_initialized():
        raise BackendUnavailableError(f"device {device!r}: CUDA is already initialised in this process; start it with "
                                      f"CUDA_VISIBLE_DEVICES={index} and --device cuda")
    os.environ["CUDA_VISIBLE_DEVICES"] = ids[int(index)] if ids else index
    log.info("%s: CUDA_VISIBLE_DEVICES=%s for device %s", backend, os.environ["CUDA_VISIBLE_DEVICES"], device)
    return device


def model_max_seq(config: dict, max_seq: int | None) -> int:
    if max_seq:
        return int(max_seq)
    return min(int(config.get("max_position_embeddings") or DEFAULT_MAX_SEQ), DEFAULT_MAX_SEQ)


def eos_id(config: dict) -> int | None:
    eos = config.get("eos_token_id")
    return eos[0] if isinstance(eos, list) and eos else eos if isinstance(eos, int) else None


def check_prompt(prompt: list[int], max_seq: int) -> None:
    if not prompt:
        raise ValueError("empty prompt")
    if len(prompt) >= max_seq:
        raise ValueError(f"prompt of {len(prompt)} tokens does not fit the {max_seq}-token context")


class InProcessGpuEngine:
    """The request path both in-process GPU backends share: check the prompt, run the backend's
    output stream on the loop thread, relay it through the shaper to the caller's thread, and stop
    the backend's request when our side ends it first. A backend supplies `_new_handle` and
    `_outputs` (an async generator of (new token ids, finish reason, cached tokens) that records in
    the handle what `_stop_request` needs), `_stop_request`, `_finish_stats`, FINISH_NAMES and
    `_shutdown`; its constructor sets tokenizer, max_seq, _loop and _closed."""

    name = ""
    can_heal = False  # neither engine can be constrained to re-type a backed-up token
    can_score = False  # nor asked for the log-probabilities of given continuations here
    can_prefill = False  # nor told to stop before a long prefill: a newly opened file gets the full prompt
    FINISH_NAMES: dict[str, str] = {}  # the backend's finish reasons in our words ("length" aside)
    tokenizer: Tokenizer
    max_seq: int
    _loop: EventLoopThread
    _closed: bool

    def generate(self, request: GenerationRequest, cancel: threading.Event | None = None) -> GenerationStream:
        stats = GenerationStats(prompt_tokens=len(request.prompt_ids))
        return GenerationStream(self._run(request, cancel or threading.Event(), stats), stats)

    def score(self, request: ScoreRequest, cancel: threading.Event | None = None) -> list[list[float]]:
        raise NotImplementedError(f"the {self.name} backend cannot score continuations (can_score is False)")

    def close(self) -> None:
        """Stop the backend and its loop; not reusable after."""
        if self._closed:
            return
        self._closed = True
        self._shutdown()

    def map_finish(self, backend: str | None, capped: bool) -> str:
        """The backend's finish reason in our words ('length' is the context limit when we capped the budget)."""
        if backend == "length":
            return "length" if capped else "max_tokens"
        return self.FINISH_NAMES.get(backend or "", "interrupted")

    def _run(self, req: GenerationRequest, cancel: threading.Event, stats: GenerationStats):
        if self._closed:
            raise RuntimeError(f"the {self.name} engine is closed")
        t_start = time.perf_counter()
        prompt = list(req.prompt_ids)
        check_prompt(prompt, self.max_seq)
        max_new = max(1, min(req.max_new_tokens, self.max_seq - len(prompt)))
        shaper = OutputShaper(req, stats, self.tokenizer.token_bytes)
        items: queue.SimpleQueue = queue.SimpleQueue()
        handle = self._new_handle()
        self._loop.submit(_pump(self._outputs(prompt, req, max_new, handle), items))
        state = Relay()
        try:
            yield from relay(items, shaper, cancel, stats, t_start, state)
        finally:
            if not state.ended:  # our side ended it (stop rule, cancel, deadline, consumer gone): stop the engine
                try:
                    self._loop.call(self._stop_request(handle), ABORT_WAIT_S)
                except (concurrent.futures.TimeoutError, RuntimeError) as exc:
                    log.warning("%s: stopping the request did not finish: %r", self.name, exc)
            stats.finish_reason = shaper.finish or self.map_finish(state.backend_finish, max_new < req.max_new_tokens)
            self._finish_stats(stats, state)
            if state.t_first is not None:
                stats.decode_ms = (time.perf_counter() - state.t_first) * 1000

    # -- what each backend supplies -------------------------------------------------------------------

    def _new_handle(self):
        raise NotImplementedError

    def _outputs(self, prompt: list[int], req: GenerationRequest, max_new: int, handle) -> AsyncIterator[tuple]:
        raise NotImplementedError

    async def _stop_request(self, handle) -> None:
        raise NotImplementedError

    def _finish_stats(self, stats: GenerationStats, state: Relay) -> None:
        raise NotImplementedError

    def _shutdown(self) -> None:
        raise NotImplementedError


async def _pump(outputs: AsyncIterator[tuple], items: queue.SimpleQueue) -> None:
    """On the loop thread: hand each output over; an exception is raised again on the caller's thread."""
    try:
        async for output in outputs:
            items.put((OUTPUT, output))
    except Exception as exc:
        items.put((ERROR, exc))
    finally:
        items.put((END, None))
