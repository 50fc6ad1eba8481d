"""Fake `lmdeploy.serve.core.AsyncEngine` (LMDeploy 0.18.0, brief §2.1-2.3). See the package docstring."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fake_torch_steps import TorchSteps, torch_engine

from ..._record import record
from ...messages import GenerationConfig, PytorchEngineConfig, SpeculativeConfig, TurbomindEngineConfig

TURBOMIND_ARCHS = ("Qwen2ForCausalLM", "LlamaForCausalLM")  # those the brief names exactly
PYTORCH_ARCHS = TURBOMIND_ARCHS + ("MistralForCausalLM", "DeepseekV2ForCausalLM")
REMOVED_ARCHS = ("Starcoder2ForCausalLM",)  # REMOVED_MODEL_MAP: neither engine serves it


class RequestError(RuntimeError):
    """A refused request; `code` is e.g. CONTEXT_LENGTH_EXCEEDED or REQUEST_CONFLICT."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass
class GenOut:
    response: str  # text of this output's tokens
    token_ids: list[int]  # the new ids of this output
    input_token_len: int
    generate_token_len: int  # generated so far
    finish_reason: str | None = None  # 'stop' | 'length' | 'error' | 'abort' | None
    logprobs: Any = None
    cached_tokens: int = 0  # prompt tokens served from the prefix cache


@dataclass
class PreprocessedRequest:
    session_id: int
    input_ids: list[int]
    gen_config: GenerationConfig
    used: bool = False  # single use


def _step_delay() -> float:
    return float(getattr(sys.modules["lmdeploy"], "STEP_DELAY_S", 0.0))


class AsyncEngine:
    def __init__(self, model_path, model_name=None, backend="turbomind", backend_config=None,
                 chat_template_config=None, max_log_len=None, trust_remote_code=False, speculative_config=None):
        record("AsyncEngine", model_path=model_path, model_name=model_name, backend=backend,
               backend_config=backend_config, chat_template_config=chat_template_config, max_log_len=max_log_len,
               trust_remote_code=trust_remote_code, speculative_config=speculative_config)
        expected = {"turbomind": TurbomindEngineConfig, "pytorch": PytorchEngineConfig}.get(backend)
        if expected is None:
            raise ValueError(f"backend {backend!r}: turbomind or pytorch")
        if backend_config is not None and not isinstance(backend_config, expected):
            raise TypeError(f"backend {backend!r} needs a {expected.__name__}, got {type(backend_config).__name__}")
        self.model_dir = Path(model_path)
        config = json.loads((self.model_dir / "config.json").read_text())
        arch = (config.get("architectures") or ["?"])[0]
        if arch in REMOVED_ARCHS:
            raise RuntimeError(f"{arch} is not supported by LMDeploy 0.18 (removed)")
        if arch not in (TURBOMIND_ARCHS if backend == "turbomind" else PYTORCH_ARCHS):
            raise RuntimeError(f"fake lmdeploy: architecture {arch} not in the {backend} engine's list")
        if speculative_config is not None:
            if not isinstance(speculative_config, SpeculativeConfig):
                raise TypeError("speculative_config must be a lmdeploy.messages.SpeculativeConfig")
            if backend == "turbomind":
                record("log", message="speculative decoding is not supported by turbomind")
            else:
                raise NotImplementedError("fake lmdeploy does not model speculative proposers")
        self.backend = backend
        self.backend_config = backend_config or expected()
        eos = config.get("eos_token_id")
        self.eos_id = eos[0] if isinstance(eos, list) else eos
        self.vocab_size = int(config["vocab_size"])
        self.session_len = self.backend_config.session_len or int(config.get("max_position_embeddings") or 2048)
        block = self.backend_config.cache_block_seq_len if backend == "turbomind" else self.backend_config.block_size
        self.block_size = int(block)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._busy: set[int] = set()
        self._serial: asyncio.Lock | None = None  # one request at a time through the shared torch engine
        self._closed = False

    def start_loop(self, loop, use_async_api=True) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop:
            raise RuntimeError("fake lmdeploy: start_loop must be called inside the running loop it is given")
        record("start_loop", use_async_api=use_async_api)
        self._loop = loop
        self._serial = asyncio.Lock()

    async def preprocess(self, messages=None, session_id=None, gen_config=None, do_preprocess=True,
                         input_ids=None) -> PreprocessedRequest:
        record("preprocess", messages=messages, session_id=session_id, gen_config=gen_config,
               do_preprocess=do_preprocess, input_ids=None if input_ids is None else list(input_ids))
        if self._loop is None:
            raise RuntimeError("fake lmdeploy: start_loop() first")
        if (messages is None) == (input_ids is None):
            raise ValueError("preprocess: pass exactly one of messages and input_ids")
        if messages is not None:
            raise NotImplementedError("fake lmdeploy: chat messages are not modelled")
        if do_preprocess:
            raise ValueError("fake lmdeploy: token ids go in with do_preprocess=False (no chat template)")
        if not (isinstance(input_ids, list) and input_ids and all(
                isinstance(t, int) and not isinstance(t, bool) and 0 <= t < self.vocab_size for t in input_ids)):
            raise TypeError("preprocess: input_ids must be a non-empty list of token ids in the vocabulary")
        if not isinstance(session_id, int) or isinstance(session_id, bool) or session_id < 0:
            raise TypeError(f"preprocess: session_id must be an int, got {session_id!r}")
        gen_config = GenerationConfig() if gen_config is None else gen_config
        if not isinstance(gen_config, GenerationConfig):
            raise TypeError("preprocess: gen_config must be a GenerationConfig")
        if gen_config.stop_words:
            raise NotImplementedError("fake lmdeploy: stop_words (single-token only in 0.18) are not modelled; "
                                      "stop ids go in stop_token_ids, stop strings are the server's job")
        if session_id in self._busy:
            raise RequestError("REQUEST_CONFLICT", f"session {session_id} is busy")
        if len(input_ids) >= self.session_len:
            raise RequestError("CONTEXT_LENGTH_EXCEEDED", f"{len(input_ids)} tokens >= session_len {self.session_len}")
        return PreprocessedRequest(session_id, list(input_ids), gen_config)

    async def generate(self, req, stream_response=True):
        """Async generator of GenOut: one per decode step when streaming, else one at the end."""
        if not isinstance(req, PreprocessedRequest):
            raise TypeError("generate: pass the request preprocess() returned")
        if req.used:
            raise RuntimeError("generate: a preprocessed request is single-use")
        if self._closed:
            raise RuntimeError("engine closed")
        req.used = True
        record("generate", session_id=req.session_id, stream_response=stream_response)
        self._busy.add(req.session_id)
        cfg = req.gen_config
        room = self.session_len - len(req.input_ids)
        max_new = room if cfg.max_new_tokens is None else min(cfg.max_new_tokens, room)
        stop_ids = set(cfg.stop_token_ids or [])
        if self.eos_id is not None and not cfg.ignore_eos:
            stop_ids.add(self.eos_id)
        prefix = self.backend_config.enable_prefix_caching
        steps = None
        text_parts: list[str] = []
        ids_all: list[int] = []
        try:
            async with self._serial:
                engine = torch_engine(self.model_dir, self.session_len)
                steps = TorchSteps(engine, req.input_ids, max_tokens=max(1, max_new), stop_ids=stop_ids,
                                   keep_ids=frozenset(cfg.stop_token_ids or []) if cfg.include_stop_str_in_output
                                   else frozenset(),
                                   temperature=cfg.temperature if cfg.do_sample else 0.0,
                                   top_p=cfg.top_p if cfg.do_sample else 1.0, seed=cfg.random_seed,
                                   speculative=False, use_cache=prefix)
                while True:
                    await asyncio.sleep(_step_delay())
                    ids, finish = steps.step()
                    record("step", session_id=req.session_id, token_ids=list(ids))
                    # Reuse is per full block: a partial last block is recomputed.
                    cached = steps.cached_tokens // self.block_size * self.block_size if prefix else 0
                    text = engine.tokenizer.decode(ids)
                    if stream_response:
                        yield GenOut(text, list(ids), len(req.input_ids), steps.count, finish, None, cached)
                    else:
                        text_parts.append(text)
                        ids_all.extend(ids)
                        if finish:
                            yield GenOut("".join(text_parts), ids_all, len(req.input_ids), steps.count, finish, None,
                                         cached)
                    if finish:
                        break
        except (asyncio.CancelledError, GeneratorExit):
            # What safe_run does on a cancelled consumer or aclose(): cancel the session's request.
            record("cancel", session_id=req.session_id, steps=steps.steps if steps else 0)
            raise
        finally:
            if steps is not None:
                steps.close()
            self._busy.discard(req.session_id)

    async def stop_all_session(self) -> None:
        record("stop_all_session")

    def close(self) -> None:
        record("close")
        self._closed = True
