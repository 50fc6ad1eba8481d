"""Token source shared by the tensorrt_llm and lmdeploy fakes: our own TorchEngine, decoded greedily
(or sampled, when asked) one forward step per `step()`, with the backend's own stop rules (stop ids,
end id, max tokens) applied here the way the real engines apply them.

One TorchEngine per (model, draft, max_seq) is shared by every fake instance in the process: loading
is the slow part and the engine serialises requests itself.
"""

from __future__ import annotations

import threading
from pathlib import Path

from completer.engines.contract import GenerationRequest, StopRules
from completer.engines.torch.engine import TorchEngine

_ENGINES: dict[tuple[str, str, int], TorchEngine] = {}
_LOCK = threading.Lock()


def torch_engine(model_dir, max_seq: int, draft_dir=None) -> TorchEngine:
    """fp32 without a bf16 decode copy: greedy output then equals the torch backend's exactly."""
    key = (str(Path(model_dir).resolve()), str(Path(draft_dir).resolve()) if draft_dir else "", int(max_seq))
    with _LOCK:
        if key not in _ENGINES:
            _ENGINES[key] = TorchEngine(model_dir, device="cpu", dtype="float32", decode_dtype="none",
                                        max_seq=max_seq, edit_reuse=False, draft_model=draft_dir)
        return _ENGINES[key]


class TorchSteps:
    """One request. `step()` -> (new token ids, finish) where finish is None, 'stop' or 'length';
    `stop_reason` is the stop id that ended it; it is returned only if it is in `keep_ids`."""

    def __init__(self, engine: TorchEngine, prompt: list[int], *, max_tokens: int, stop_ids: set[int],
                 keep_ids: frozenset[int] = frozenset(), temperature: float = 0.0, top_p: float = 1.0,
                 seed: int | None = None,
                 speculative: bool = False, use_cache: bool = True):
        self.engine = engine
        self.stop_ids = set(stop_ids)
        self.keep_ids = frozenset(keep_ids)
        self.max_tokens = max_tokens
        self.count = 0
        self.steps = 0
        self.stop_reason: int | None = None
        # The torch engine gets no stop rules of its own: this class decides where the request ends.
        request = GenerationRequest(prompt_ids=tuple(prompt), max_new_tokens=max_tokens, stop=StopRules(max_lines=0),
                                    speculative=speculative, use_cache=use_cache, temperature=temperature,
                                    top_p=top_p, seed=seed)
        self.stream = engine.generate(request)
        self._gen = iter(self.stream)
        self.closed = False

    def step(self) -> tuple[list[int], str | None]:
        if self.closed:
            raise RuntimeError("fake: step() after the request ended")
        self.steps += 1
        delta = next(self._gen, None)
        if delta is None:  # the torch engine ran out of room (max_seq) or tokens
            self.close()
            return [], "length"
        ids: list[int] = []
        finish = None
        for t in delta.token_ids:
            if t in self.stop_ids:
                finish, self.stop_reason = "stop", t
                if t in self.keep_ids:
                    ids.append(t)
                break
            ids.append(t)
            self.count += 1
            if self.count >= self.max_tokens:
                finish = "length"
                break
        if finish:
            self.close()
        return ids, finish

    @property
    def cached_tokens(self) -> int:
        return self.stream.stats.cached_tokens

    def close(self) -> None:
        """Release the torch engine (its generator holds the engine's lock until closed)."""
        if not self.closed:
            self.closed = True
            self._gen.close()
