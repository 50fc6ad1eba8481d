"""Prefix cache bookkeeping: exact block ids, sharing, reference counts and eviction order."""

from completer.engines.torch.kv_pool import PrefixCache


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
