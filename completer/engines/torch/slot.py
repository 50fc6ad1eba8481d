"""The working slot: the model's preallocated contiguous K/V cache, and which tokens it holds.

`cached_ids` lists the tokens whose K/V are valid at positions 0..len-1. Per keystroke the cost is
the tokens that changed, not the prompt: a new prompt keeps its longest common prefix with them
(typing on one line, accepting a suggestion: the generated tokens are in the slot too), gets what
the block pool knows beyond that copied in (kv_pool.py), has the chunks an edit only shifted moved
with their keys re-rotated (edit reuse), and computes the rest.

plan_prefill decides all that on token lists; Slot.prefill carries it out on the tensors.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch

from completer.engines.contract import GenerationRequest, GenerationStats
from completer.engines.model_config import ModelConfig

from .decoding import plan_edit_reuse
from .kv_pool import BlockPool
from .model import KVCache, rerotate_keys

# forward(ids, start, num_logits) -> logits [num_logits, vocab]: the engine's step, K/V written at start..
Forward = Callable[[list[int], int, int], torch.Tensor]


def common_prefix_len(a, b) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


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


@dataclass
class PrefillPlan:
    """How the slot comes to hold a prompt's K/V, in the order it is done. Positions are the
    prompt's; the last token is always computed (its logits start decoding)."""
    keep: int  # the slot's first `keep` tokens stay as they are (a multiple of block_size when restoring)
    restore: list[int]  # pool blocks copied in at sequence blocks keep // block_size, +1, ...
    reuse: int  # [0, reuse) hold the prompt's K/V after the restore: keep, or the pool's cover
    moves: list[tuple[int, int, int]]  # (old, new, length): slot chunks an edit shifted, >= reuse
    compute: list[tuple[int, int]]  # [start, end) segments run through the model, left to right
    exact: int  # [0, exact) is computed as if from scratch: what the pool may keep (moves are not)

    @property
    def restored(self) -> int:
        return self.reuse - self.keep if self.restore else 0

    @property
    def computed(self) -> int:
        """Prompt tokens run through the model: what the slot, the pool and the moves do not cover."""
        return sum(end - start for start, end in self.compute)


def plan_prefill(cached: list[int], prompt: list[int], pooled: list[int], block_size: int,
                 edit_reuse: bool, min_chunk: int) -> PrefillPlan:
    """What to keep, restore, move and compute to prefill `prompt` into a slot holding `cached`.
    pooled: the pool's blocks for the prompt's prefix (PrefixCache.match; [] without the pool)."""
    keep = reuse = common_prefix_len(cached, prompt)
    restore: list[int] = []
    covered = min(len(pooled) * block_size, len(prompt) - 1)
    if covered > reuse:  # the pool knows more of this prompt than the slot: copy it in
        keep = reuse // block_size * block_size
        restore = pooled[keep // block_size:]
        cached = cached[:keep] + prompt[keep:len(pooled) * block_size]  # the slot after the restore
        reuse = covered
    reuse = min(reuse, len(prompt) - 1)  # at least one token runs, to produce logits
    moves = plan_edit_reuse(cached, prompt, reuse, min_chunk) if edit_reuse else []
    return PrefillPlan(min(keep, reuse), restore, reuse, moves, uncovered(reuse, len(prompt), moves),
                       moves[0][1] if moves else len(prompt))


class Slot:
    """The target model's working cache: caches [1, kv_heads, max_seq, head_dim] per layer, filled
    for positions 0..len(cached_ids)-1. Requests hold the engine's lock while they use it."""

    def __init__(self, caches: list[KVCache], config: ModelConfig, pool: BlockPool, edit_reuse: bool,
                 min_chunk: int):
        self.caches, self.config, self.pool = caches, config, pool
        self.edit_reuse, self.min_chunk = edit_reuse, min_chunk
        self.cached_ids: list[int] = []  # tokens whose K/V are valid at positions 0..len-1

    def forget_from(self, position: int) -> None:
        """Positions from `position` on are about to be overwritten (measurements, warm-ups)."""
        del self.cached_ids[position:]

    def clear(self) -> None:
        self.cached_ids = []

    def plan(self, prompt: list[int], req: GenerationRequest) -> PrefillPlan:
        """What prefill would do for `prompt` now (the pool's blocks it would restore marked used)."""
        pool = self.pool if req.use_cache and self.pool.index is not None else None
        pooled = pool.index.match(prompt, req.session_key) if pool is not None else []
        edit_reuse = self.edit_reuse if req.edit_reuse is None else req.edit_reuse
        return plan_prefill(self.cached_ids if req.use_cache else [], prompt, pooled, self.pool.block_size,
                            req.use_cache and edit_reuse, self.min_chunk)

    def prefill(self, prompt: list[int], req: GenerationRequest, stats: GenerationStats,
                forward: Forward, cancel: threading.Event | None = None, piece: int | None = None,
                plan: PrefillPlan | None = None) -> torch.Tensor | None:
        """Make the slot hold K/V for the whole prompt, computing as little as possible; returns the
        logits after its last token. Counts what it did in stats. `plan`: this prompt's plan(), made
        just before under the same lock (the engine looks at it first), else made here.

        With `piece`, the computed segments run `piece` tokens a forward, and `cancel` is looked at
        before each: when it is set, prefill stops there and returns None, the slot (and the pool)
        keeping the prompt's K/V up to that point, so a later request or warm-up goes on from it."""
        pool = self.pool if req.use_cache and self.pool.index is not None else None
        plan = plan or self.plan(prompt, req)
        if plan.restore:
            bs = self.pool.block_size
            del self.cached_ids[plan.keep:]
            pool.restore(plan.restore, plan.keep // bs)
            self.cached_ids.extend(prompt[plan.keep:plan.keep + len(plan.restore) * bs])
            stats.restored_tokens = plan.restored
        if plan.moves:
            self.move_chunks(plan.moves)
            stats.shifted_tokens = sum(n for _, _, n in plan.moves)
        del self.cached_ids[plan.reuse:]
        computed = 0
        for start, end in plan.compute:  # the last segment yields the logits
            for at in range(start, end, piece or end - start):
                if cancel is not None and cancel.is_set():  # [0, at) holds the prompt's K/V
                    self.cached_ids.extend(prompt[plan.reuse:at])
                    stats.cached_tokens, stats.prefill_tokens = at - computed, computed
                    if pool is not None:
                        pool.save(pool.index.insert(prompt[:min(plan.exact, at)], req.session_key))
                    return None
                upto = min(end, at + (piece or end - start))
                logits = forward(prompt[at:upto], at, 1)[-1]
                stats.forward_passes += 1
                computed += upto - at
        self.cached_ids.extend(prompt[plan.reuse:])
        stats.cached_tokens, stats.prefill_tokens = len(prompt) - computed, computed
        if pool is not None:
            pool.save(pool.index.insert(prompt[:plan.exact], req.session_key))
        return logits

    def move_chunks(self, chunks: list[tuple[int, int, int]]) -> None:
        """Move slot K/V chunks (old position, new position, length) to their new positions, keys
        re-rotated by the shift. Every source is read before any destination is written."""
        for cache in self.caches:
            moved = [(new, n, old - new, cache.k[0, :, old:old + n].clone(), cache.v[0, :, old:old + n].clone())
                     for old, new, n in chunks]
            for new, n, back, k, v in moved:
                cache.k[0, :, new:new + n] = rerotate_keys(k, self.config, -back)
                cache.v[0, :, new:new + n] = v
