"""Draft-model speculation: a small model with the target's tokenizer proposes k tokens, the target
verifies them in one pass (decoding.verify_draft), so the output is the target's own."""

from __future__ import annotations

from pathlib import Path

import torch

from completer.tokenizer import Tokenizer

from .compile import scratch_start
from .costs import measure_step
from .decoding import DraftPolicy, Sampler
from .model import load_model
from .slot import Forward, common_prefix_len


class ModelDrafter:
    """A small draft model proposing k tokens for the target to verify in one pass.

    It keeps its own working slot: before proposing it feeds whatever of the context it has not
    seen (longest common prefix with what it has, so rejected proposals roll back by themselves).
    Its policy weighs k draft steps plus the wider verification against plain decoding.

    What it shares with the target: the tokenizer (token_bytes, checked), device, weight dtypes
    (small_dtype: the decode-phase copy, None for none), max_seq and max_draft; target_step and
    target_costs (costs.verification_costs) are the target's forward and its measured costs.
    """

    def __init__(self, model_dir: str | Path, target_step: Forward, target_costs: list[float], *,
                 token_bytes: list[bytes], device: str, dtype: torch.dtype, small_dtype: torch.dtype | None,
                 max_seq: int, max_draft: int):
        from completer.engines.model_dirs import resolve_model

        model_dir = resolve_model(str(model_dir))
        self.device, self.max_seq, self.max_draft = device, max_seq, max_draft
        self.model = load_model(model_dir, device=device, dtype=dtype)
        tok = Tokenizer(model_dir)
        if tok.token_bytes != token_bytes:
            raise ValueError(f"draft model {model_dir} does not share the target's tokenizer")
        self.model_dir = model_dir
        self.model.prepare_for_inference(small_dtype, small_max_t=1 + max_draft)
        self.model.setup_cache(max_seq)
        self.cached_ids: list[int] = []
        self.policy = self.measured_policy(target_step, target_costs)

    def measured_policy(self, target_step: Forward, target_costs: list[float]) -> DraftPolicy:
        """A fresh policy from the cost of drafting k tokens and verifying them, relative to one
        plain target step (again when the target's step changes: after a background compile).
        Both models' steps are timed at the scratch positions (compile.scratch_start): the caller
        forgets them in the target's slot first."""
        scratch = scratch_start(self.max_seq, self.max_draft)
        del self.cached_ids[scratch:]  # overwritten there
        step = measure_step(self._forward, scratch, 1, self.device) / measure_step(target_step, scratch, 1, self.device)
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
