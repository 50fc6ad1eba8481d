"""The `lmdeploy` backend: LMDeploy 0.18.0's AsyncEngine (TurboMind by default, or its PyTorch engine),
in process, on an NVIDIA GPU.

We send the prompt as token ids (`preprocess(input_ids=..., do_preprocess=False)`: no chat template),
stream `GenOut.token_ids`, and apply every stop rule on our side with OutputShaper. Only single
stop ids go to the engine (`stop_token_ids`); its `stop_words` accept single-token words only, so
multi-token stops ("\\n\\n", block ends) are never passed: the shaper enforces them. Prefix caching is
on; LMDeploy reuses whole blocks (64 tokens by default, `block_size` to change), and reports the
reused prompt tokens per request (`cached_tokens`).

Not supported, refused at start-up rather than ignored: speculation (0.18 has no draft-target or
n-gram proposer, only EAGLE-family heads and MTP that our models lack) and StarCoder2 (removed from
both engines). Refused too: a model directory that ships its own Python code (`auto_map` in
config.json or tokenizer_config.json): LMDeploy loads configs and tokenizers with
`trust_remote_code=True`, so such a `--model` would run that code in our process.

Like the trtllm backend, one asyncio loop runs on a daemon thread (`start_loop` must get the running
loop); the caller's thread reads outputs through a queue and cancels the consuming task once our
side is done, which makes LMDeploy cancel the session's request.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import json
import logging
import time
from pathlib import Path
from typing import Any

from completer.tokenizer import Tokenizer

from .contract import BackendUnavailableError, GenerationRequest, GenerationStats
from .gpu_runtime import (
    EventLoopThread,
    InProcessGpuEngine,
    Relay,
    import_backend,
    model_max_seq,
    select_cuda_device,
)
from .model_config import read_hf_config

log = logging.getLogger(__name__)

ENGINES = ("turbomind", "pytorch")
SPECULATION = ("ngram", "draft", "none")
DTYPES = {"auto": "auto", "float16": "float16", "fp16": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}
UNSUPPORTED_ARCHS = {"Starcoder2ForCausalLM": "StarCoder2 is not supported by LMDeploy 0.18 (removed from both "
                                              "the TurboMind and the PyTorch engine); use --backend trtllm or torch"}
SPECULATION_STATUS = "unsupported by LMDeploy 0.18 (no draft-target/n-gram proposer)"
MISSING = ("lmdeploy is not installed: `pip install lmdeploy==0.18.0` (a CUDA 12 binary wheel; it pins "
           "torch<=2.12.1 and triton, so use a separate environment from a newer torch). It needs an NVIDIA GPU.")


class _Task:
    """The asyncio task reading one request, set by the pump on the loop thread before its first await."""

    task: asyncio.Task | None = None


class LmdeployEngine(InProcessGpuEngine):
    name = "lmdeploy"
    FINISH_NAMES = {"stop": "stop_token", "abort": "cancelled", "error": "error"}

    def __init__(self, model_dir, *, device: str = "auto", dtype: str = "auto", engine: str = "turbomind",
                 draft_model: str | Path | None = None, speculation: str = "none", block_size: int | None = None,
                 max_seq: int | None = None, backend_options: dict | None = None):
        t0 = time.perf_counter()
        if engine not in ENGINES:
            raise ValueError(f"lmdeploy engine {engine!r}: choose from {', '.join(ENGINES)}")
        if speculation not in SPECULATION:
            raise ValueError(f"speculation {speculation!r}: choose from {', '.join(SPECULATION)}")
        if draft_model or speculation != "none":
            asked = f"draft model {draft_model}" if draft_model else f"speculation={speculation!r}"
            raise BackendUnavailableError(f"{asked}: LMDeploy 0.18 has no draft-target or n-gram proposer (its "
                                          "speculation needs EAGLE/EAGLE3/MTP heads); use --speculation none, or "
                                          "--backend trtllm for n-gram or draft-model speculation")
        if dtype not in DTYPES:
            raise ValueError(f"dtype {dtype!r}: LMDeploy computes in {', '.join(DTYPES)}")
        self.device = select_cuda_device(device, "LMDeploy")
        self.model_dir = Path(model_dir)
        config = read_hf_config(self.model_dir)
        refuse_remote_code(self.model_dir, config)
        for arch in config.get("architectures") or []:
            if arch in UNSUPPORTED_ARCHS:
                raise BackendUnavailableError(UNSUPPORTED_ARCHS[arch])
        lmdeploy, async_engine_cls = _import_lmdeploy()
        self._lmdeploy = lmdeploy
        self.tokenizer = Tokenizer(self.model_dir)
        self.engine_kind = engine
        fields: dict[str, Any] = {"dtype": DTYPES[dtype], "session_len": model_max_seq(config, max_seq),
                                  "enable_prefix_caching": True}
        if block_size:
            fields["cache_block_seq_len" if engine == "turbomind" else "block_size"] = block_size
        self.backend_options = dict(backend_options or {})
        fields.update(self.backend_options)  # engine config fields, overriding ours
        cls = lmdeploy.TurbomindEngineConfig if engine == "turbomind" else lmdeploy.PytorchEngineConfig
        try:
            self.backend_config = cls(**fields)
        except (TypeError, ValueError, AssertionError) as exc:
            raise ValueError(f"{cls.__name__}({', '.join(sorted(fields))}): {exc}") from None
        self.max_seq = int(self.backend_config.session_len)
        self.dtype = self.backend_config.dtype
        self.block_size = (self.backend_config.cache_block_seq_len if engine == "turbomind"
                           else self.backend_config.block_size)
        log.info("lmdeploy: %s engine, prefix caching on (%d-token blocks); speculation %s", engine,
                 self.block_size, SPECULATION_STATUS)
        self._session_ids = itertools.count(1)  # one fresh session per request; reuse is by prefix, not session
        self._loop = EventLoopThread("lmdeploy-loop")
        try:
            self.engine = self._loop.call(self._start(async_engine_cls))
        except BaseException:
            self._loop.stop()
            raise
        self.version = getattr(lmdeploy, "__version__", "unknown")
        self._closed = False
        self.load_ms = (time.perf_counter() - t0) * 1000

    async def _start(self, async_engine_cls):
        """Build the engine on the loop thread and hand it the running loop."""
        engine = async_engine_cls(str(self.model_dir), backend=self.engine_kind, backend_config=self.backend_config)
        engine.start_loop(asyncio.get_running_loop(), use_async_api=True)
        return engine

    # -- Engine ---------------------------------------------------------------------------------

    def describe(self) -> dict:
        graphs = None if self.engine_kind == "turbomind" else not self.backend_config.eager_mode
        return {
            "backend": self.name, "device": self.device, "dtype": self.dtype, "model_dir": str(self.model_dir),
            "max_seq": self.max_seq, "can_heal": self.can_heal, "engine": self.engine_kind,
            "speculation": SPECULATION_STATUS,
            "kv_cache": {"prefix_caching": bool(self.backend_config.enable_prefix_caching),
                         "block_size": self.block_size},
            "cuda_graphs": graphs,  # PyTorch engine: on unless eager_mode; TurboMind: its own business
            "backend_options": sorted(self.backend_options), "version": self.version,
            "load_ms": round(self.load_ms, 1),
        }

    def _shutdown(self) -> None:
        """Drop every session, stop the loop and the engine."""
        try:
            self._loop.call(self.engine.stop_all_session(), 5.0)
        except (concurrent.futures.TimeoutError, RuntimeError) as exc:
            log.warning("lmdeploy: stop_all_session failed: %r", exc)
        self._loop.stop()
        close = getattr(self.engine, "close", None)
        if close is not None:
            close()

    # -- internals ------------------------------------------------------------------------------

    def gen_config(self, req: GenerationRequest, max_new: int):
        kw: dict[str, Any] = {"max_new_tokens": max_new, "stop_token_ids": sorted(req.stop.stop_token_ids)}
        if req.temperature > 0:
            kw.update(do_sample=True, temperature=req.temperature, top_p=req.top_p, random_seed=req.seed)
        else:
            kw["do_sample"] = False  # greedy
        return self._lmdeploy.GenerationConfig(**kw)

    @staticmethod
    def _new_handle() -> _Task:
        return _Task()

    async def _outputs(self, prompt: list[int], req: GenerationRequest, max_new: int, handle: _Task):
        """On the loop thread: preprocess and stream one request in a session of its own, yielding
        (new ids, finish reason, cached tokens). Cancelling the task that reads this makes LMDeploy
        cancel the session's request."""
        handle.task = asyncio.current_task()
        prepared = await self.engine.preprocess(session_id=next(self._session_ids),
                                                gen_config=self.gen_config(req, max_new), do_preprocess=False,
                                                input_ids=prompt)
        async with contextlib.aclosing(self.engine.generate(prepared, stream_response=True)) as outputs:
            async for out in outputs:
                yield list(out.token_ids or []), out.finish_reason, out.cached_tokens or 0

    @staticmethod
    async def _stop_request(handle: _Task) -> None:
        task = handle.task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})

    @staticmethod
    def _finish_stats(stats: GenerationStats, state: Relay) -> None:
        if state.backend_finish == "error":
            log.warning("lmdeploy: the engine ended a request with an error")
        stats.prefill_tokens = stats.prompt_tokens - stats.cached_tokens
        stats.forward_passes = state.produced  # one decode step per token: no speculation here



def refuse_remote_code(model_dir: Path, config: dict) -> None:
    """BackendUnavailableError if the model would make LMDeploy run its own code (see the module docstring)."""
    found = {"config.json": config}
    try:
        found["tokenizer_config.json"] = json.loads((model_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    for name, data in found.items():
        if isinstance(data, dict) and data.get("auto_map"):
            raise BackendUnavailableError(
                f"{model_dir / name} has auto_map: the model ships Python code of its own, which LMDeploy would "
                "run (it loads models with trust_remote_code=True); refused. Use a model directory without "
                "auto_map, or --backend torch (which never runs model code)")


def _import_lmdeploy():
    return import_backend("lmdeploy", "lmdeploy.serve.core", "AsyncEngine", missing=MISSING,
                          written_for="LMDeploy 0.18.0 (AsyncEngine in lmdeploy.serve.core)",
                          needs="torch with CUDA and an NVIDIA GPU")
