"""K/V reuse on token lists and tiny tensors: the prefix cache's bookkeeping (exact block ids, sharing,
reference counts, eviction order), the block pool's copies, and the slot's prefill plan."""

import functools
import gc
import os

import torch

from completer.engines.contract import GenerationRequest, GenerationStats
from completer.engines.torch.kv_pool import BlockPool, PrefixCache, untouched_zeros
from completer.engines.torch.model import KVCache
from completer.engines.torch.slot import Slot, plan_prefill
from tests.conftest import bench_module


def seq(*blocks, bs=4):
    """Token list made of blocks named by small integers (block n = [n*10, n*10+1, ...])."""
    return [b * 10 + i for b in blocks for i in range(bs)]


def test_insert_and_match_whole_blocks():
    c = PrefixCache(num_blocks=8, block_size=4)
    assert c.match(seq(1, 2)) == []
    tokens = seq(1, 2, 3) + [99, 98]  # 3.5 blocks: the partial block is not cached
    assert c.insert(tokens) == [(0, 0), (1, 1), (2, 2)]
    assert c.match(tokens) == [0, 1, 2]
    assert c.match(seq(1, 2, 7)) == [0, 1]
    assert c.insert(tokens) == []  # already cached
    assert c.used_blocks == 3


def test_diverging_prefixes_share_their_common_blocks():
    c = PrefixCache(num_blocks=8, block_size=4)
    c.insert(seq(1, 2, 3))
    assert c.insert(seq(1, 2, 5, 6)) == [(2, 3), (3, 4)]
    assert c.match(seq(1, 2, 5, 6)) == [0, 1, 3, 4]
    assert c.match(seq(1, 2, 3)) == [0, 1, 2]
    # K/V depend on everything before: the same tokens after a different prefix are a different block
    assert c.insert(seq(9, 2, 3)) == [(0, 5), (1, 6), (2, 7)]


def test_lru_leaf_is_evicted_never_an_inner_block():
    c = PrefixCache(num_blocks=4, block_size=4)
    c.insert(seq(1, 2, 3))  # blocks 0, 1, 2
    c.insert(seq(1, 5))  # block 3, sharing block 0
    c.match(seq(1, 5))  # touch: 1-5 is now more recent than 1-2-3
    new = c.insert(seq(1, 5, 6))  # needs one block: the LRU leaf is block 2 (tokens 3)
    assert new == [(2, 2)]
    assert c.match(seq(1, 2, 3)) == [0, 1]
    assert c.match(seq(1, 5, 6)) == [0, 3, 2]
    assert c.evictions == 1


def test_a_prefix_being_extended_is_not_evicted_to_make_room_for_itself():
    c = PrefixCache(num_blocks=3, block_size=4)
    c.insert(seq(1, 2))
    new = c.insert(seq(1, 2, 3, 4))  # one free block, then nothing evictable but its own path
    assert new == [(2, 2)]
    assert c.match(seq(1, 2, 3, 4)) == [0, 1, 2]


def test_pinned_blocks_survive_and_insert_stops_when_nothing_can_go():
    c = PrefixCache(num_blocks=2, block_size=4)
    c.insert(seq(1, 2))
    c.pin(c.match(seq(1, 2)))
    assert c.insert(seq(7, 8)) == []
    c.unpin([0, 1])
    assert c.insert(seq(7)) == [(0, 1)]  # leaf block 1 (tokens 2) went first


def test_session_affinity_evicts_from_the_biggest_working_set():
    c = PrefixCache(num_blocks=5, block_size=4)
    c.insert(seq(1, 2, 3), session="big")  # 0, 1, 2
    c.insert(seq(8), session="small")  # 3
    c.match(seq(1, 2, 3), session="big")  # big's blocks are now the most recent, small's the oldest
    assert c.insert(seq(4, 5), session="big") == [(0, 4), (1, 2)]
    assert c.match(seq(8)) == [3]  # the small session kept its block despite being least recent
    assert c.per_session == {"big": 4, "small": 1}


def tiny_caches(layers=2, kv_heads=2, max_seq=32, head_dim=4, seed=0):
    """Per-layer slot caches as the model has them ([1, kv_heads, max_seq, head_dim]), random."""
    gen = torch.Generator().manual_seed(seed)
    caches = [KVCache(1, max_seq, kv_heads, head_dim, torch.float32, "cpu") for _ in range(layers)]
    for c in caches:
        c.k.copy_(torch.randn(c.k.shape, generator=gen))
        c.v.copy_(torch.randn(c.v.shape, generator=gen))
    return caches


def test_block_pool_is_sized_from_the_caches():
    per_block = 2 * 2 * 2 * 4 * 4 * 4  # k and v, layers, kv heads, block size, head dim, fp32 bytes
    pool = BlockPool(tiny_caches(), cache_mb=8.5 * per_block / 2**20, block_size=4)
    assert pool.index.num_blocks == 8 and pool.mb * 2**20 == 8 * per_block
    assert pool.k.shape == pool.v.shape == (2, 8, 2, 4, 4)
    off = BlockPool(tiny_caches(), cache_mb=0.5 * per_block / 2**20, block_size=4)
    assert off.index is None and off.k.shape[1] == 0 and off.mb == 0


def test_the_pools_memory_is_zero_and_resident_only_where_written():
    """The pool is the server's largest allocation (64 MB by default): it must read as zeros, take
    writes, outlive the mapping's Python object, and cost memory only for the pages written."""
    resident_mb = functools.partial(bench_module("big_documents").server_rss_mb, os.getpid())
    before = resident_mb()
    big = untouched_zeros((64, 1024, 1024), torch.float32, torch.device("cpu"))  # 256 MB
    gc.collect()
    assert resident_mb() - before < 32  # a fresh torch.zeros would hold all 256
    big[3, 7, :16] = 1.5
    assert resident_mb() - before < 32  # one written page
    assert big[3, 7, :16].eq(1.5).all() and big[3, 7, 16:].eq(0).all() and not big[60].any()
    assert untouched_zeros((2, 0, 3), torch.float32, "cpu").shape == (2, 0, 3)


def test_block_pool_save_then_restore_round_trip():
    caches = tiny_caches()
    before = [(c.k.clone(), c.v.clone()) for c in caches]
    pool = BlockPool(caches, cache_mb=1, block_size=4)
    pool.save([(0, 5), (2, 1)])  # sequence blocks 0 and 2 (positions 0-3, 8-11) into pool blocks 5 and 1
    for i, (k, v) in enumerate(before):
        torch.testing.assert_close(pool.k[i, 5], k[0, :, 0:4], rtol=0, atol=0)
        torch.testing.assert_close(pool.v[i, 1], v[0, :, 8:12], rtol=0, atol=0)
    for c in caches:
        c.k.zero_()
        c.v.zero_()
    pool.restore([5, 1], first_block=3)  # back in, as sequence blocks 3 and 4 (positions 12-19)
    for c, (k, v) in zip(caches, before):
        torch.testing.assert_close(c.k[0, :, 12:20], torch.cat([k[0, :, 0:4], k[0, :, 8:12]], 1), rtol=0, atol=0)
        torch.testing.assert_close(c.v[0, :, 12:20], torch.cat([v[0, :, 0:4], v[0, :, 8:12]], 1), rtol=0, atol=0)
        assert not c.k[0, :, :12].any() and not c.k[0, :, 20:].any()  # nothing else written


def plan(cached, prompt, pooled=(), block_size=4, edit_reuse=False, min_chunk=8):
    p = plan_prefill(list(cached), list(prompt), list(pooled), block_size, edit_reuse, min_chunk)
    return p.keep, p.restore, p.reuse, p.moves, p.compute, p.exact, p.restored


def test_prefill_plan_keeps_the_common_prefix_and_computes_at_least_the_last_token():
    prompt = list(range(1, 13))
    assert plan([], prompt) == (0, [], 0, [], [(0, 12)], 12, 0)
    assert plan(prompt[:10] + [99], prompt) == (10, [], 10, [], [(10, 12)], 12, 0)
    assert plan(prompt + [13, 14], prompt) == (11, [], 11, [], [(11, 12)], 12, 0)  # logits need one


def test_prefill_plan_restores_what_the_pool_knows_beyond_the_slot():
    prompt = list(range(1, 20))
    # The slot shares 3 tokens, the pool 3 blocks (12 tokens): copy them all in, from block 0.
    assert plan([1, 2, 3, 99], prompt, pooled=[7, 8, 9]) == (0, [7, 8, 9], 12, [], [(12, 19)], 19, 12)
    # The slot already holds block 0 and part of block 1: keep block 0, restore from block 1 on.
    assert plan(prompt[:6] + [99], prompt, pooled=[7, 8, 9]) == (4, [8, 9], 12, [], [(12, 19)], 19, 8)
    # The slot knows as much as the pool: nothing to copy.
    assert plan(prompt[:14], prompt, pooled=[7, 8, 9]) == (14, [], 14, [], [(14, 19)], 19, 0)
    # The pool covers the whole prompt: the last token is computed all the same.
    assert plan([], prompt[:12], pooled=[7, 8, 9]) == (0, [7, 8, 9], 11, [], [(11, 12)], 12, 11)


def test_prefill_plan_moves_chunks_an_edit_shifted():
    old = list(range(100, 140))
    new = old[:10] + [1, 2, 3] + old[10:]  # three tokens typed after the first ten
    # The 29 tokens after the insertion move by 3; the insertion and the last token are computed,
    # and only the prefix before the first moved chunk is exact enough for the pool.
    assert plan(old, new, edit_reuse=True) == (10, [], 10, [(10, 13, 29)], [(10, 13), (42, 43)], 13, 0)
    assert plan(old, new, edit_reuse=False) == (10, [], 10, [], [(10, 43)], 43, 0)


def test_slot_prefill_saves_to_the_pool_and_restores_from_it():
    caches = tiny_caches(max_seq=64)
    pool = BlockPool(caches, cache_mb=1, block_size=4)
    slot = Slot(caches, config=None, pool=pool, edit_reuse=False, min_chunk=8)
    computed = []

    def forward(ids, start, num_logits):  # records what runs; K/V stay whatever the caches hold
        computed.append((start, start + len(ids)))
        return torch.zeros(num_logits, 7)

    prompt = list(range(1, 15))
    first = GenerationStats()
    slot.prefill(prompt, GenerationRequest(prompt_ids=tuple(prompt)), first, forward)
    assert computed == [(0, 14)] and slot.cached_ids == prompt and first.prefill_tokens == 14
    assert pool.index.match(prompt) == [0, 1, 2]  # the whole blocks of the prompt were saved
    saved = caches[0].k[0, :, :12].clone()
    slot.clear()
    for c in caches:
        c.k.zero_()
    computed.clear()
    again = GenerationStats()
    slot.prefill(prompt, GenerationRequest(prompt_ids=tuple(prompt)), again, forward)
    assert computed == [(12, 14)] and slot.cached_ids == prompt
    assert (again.restored_tokens, again.cached_tokens, again.prefill_tokens) == (12, 12, 2)
    torch.testing.assert_close(caches[0].k[0, :, :12], saved, rtol=0, atol=0)
    computed.clear()
    off = GenerationStats()
    slot.prefill(prompt, GenerationRequest(prompt_ids=tuple(prompt), use_cache=False), off, forward)
    assert computed == [(0, 14)] and off.cached_tokens == 0 and off.restored_tokens == 0


def test_sessions_that_hold_no_block_leave_per_session():
    """Issue 24 finding 13: a closed document's session key must not stay in per_session forever."""
    c = PrefixCache(num_blocks=2, block_size=4)
    c.insert(seq(1), session="file:///a.py")
    c.insert(seq(1, 2), session="file:///b.py")  # block of (1) moves to b, a holds nothing
    assert c.per_session == {"file:///b.py": 2}
    for n in range(3, 7):  # every block evicted and reused by other sessions in turn
        c.insert(seq(n), session=f"file:///{n}.py")
    assert "file:///b.py" not in c.per_session and all(v > 0 for v in c.per_session.values())
    assert sum(c.per_session.values()) == c.used_blocks
