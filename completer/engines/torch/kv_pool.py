"""The block pool: K/V of earlier prompts kept in `block_size`-token blocks, so that a prompt whose
prefix is there (another file, another editor window, going back) gets it copied into the working
slot instead of recomputed.

PrefixCache is the bookkeeping, pure Python with no tensors, so every policy is unit-tested exactly
(block ids, reference counts, eviction order); it only hands out block ids:

- A radix tree over token ids at block granularity: a node is one full block of tokens, its path
  from the root is the prefix it was computed with (K/V depend on everything before them).
- `match(tokens)` finds the longest cached prefix, in whole blocks.
- `insert(tokens, session)` adds the missing blocks of a prefix, allocating from the free list and
  evicting when it is empty.
- Reference counts: a block is referenced by its children and by pins (blocks in use by a request);
  only unreferenced leaves can be evicted, so a prefix never loses a block in its middle.
- Eviction is LRU with per-session affinity: the victim comes from the session that holds the most
  blocks (its least recently used leaf), so one editor's large working set cannot push out another
  editor's small one.

BlockPool is the storage: `cache_mb` of blocks preallocated once, and the copies between them and
the slot's per-layer caches.
"""

from __future__ import annotations

import math
import mmap
from dataclasses import dataclass, field

import torch

from .model import KVCache


@dataclass(eq=False)
class Node:
    block_id: int
    tokens: tuple[int, ...]
    parent: "Node | None"
    session: str = ""
    last_used: int = 0
    refs: int = 0  # children + pins
    children: dict[tuple[int, ...], "Node"] = field(default_factory=dict)


class PrefixCache:
    def __init__(self, num_blocks: int, block_size: int):
        if num_blocks < 1 or block_size < 1:
            raise ValueError("the prefix cache needs at least one block of at least one token")
        self.num_blocks, self.block_size = num_blocks, block_size
        self.root = Node(-1, (), None)
        self.free: list[int] = list(range(num_blocks - 1, -1, -1))  # pop() hands out 0, 1, 2, ...
        self.nodes: dict[int, Node] = {}  # block id -> node
        self.per_session: dict[str, int] = {}
        self._clock = 0
        self.evictions = 0

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def _blocks(self, tokens) -> list[tuple[int, ...]]:
        bs = self.block_size
        return [tuple(tokens[i:i + bs]) for i in range(0, len(tokens) - bs + 1, bs)]

    def match(self, tokens, session: str = "") -> list[int]:
        """Block ids of the longest cached prefix of `tokens` (whole blocks), marked recently used."""
        node, out, now = self.root, [], self._tick()
        for key in self._blocks(tokens):
            node = node.children.get(key)
            if node is None:
                break
            node.last_used = now
            out.append(node.block_id)
        return out

    def insert(self, tokens, session: str = "") -> list[tuple[int, int]]:
        """Make every whole block of `tokens` cached. Returns (block index in the sequence, block id)
        for the blocks that were newly allocated and must now be filled by the caller. Stops early
        (caching a shorter prefix) if nothing can be evicted."""
        now = self._tick()
        node, path, new = self.root, [], []
        try:
            for index, key in enumerate(self._blocks(tokens)):
                child = node.children.get(key)
                if child is None:
                    block_id = self._allocate(session)
                    if block_id is None:
                        break
                    child = Node(block_id, key, node, session)
                    node.children[key] = child
                    node.refs += 1
                    self.nodes[block_id] = child
                    self._count(session, 1)
                    new.append((index, block_id))
                elif child.session != session:  # the block now serves this session too: move it
                    self._count(child.session, -1)
                    self._count(session, 1)
                    child.session = session
                child.last_used = now
                child.refs += 1  # pin the path while we extend it: never evict our own ancestors
                path.append(child)
                node = child
        finally:
            for n in path:
                n.refs -= 1
        return new

    def _count(self, session: str, delta: int) -> None:
        """Blocks held per session; a session holding none has no entry (closed documents' keys
        would otherwise stay forever)."""
        n = self.per_session.get(session, 0) + delta
        if n:
            self.per_session[session] = n
        else:
            self.per_session.pop(session, None)

    def _allocate(self, session: str) -> int | None:
        if not self.free and not self._evict():
            return None
        return self.free.pop()

    def _evict(self) -> bool:
        """Free one unreferenced leaf: the least recently used one of the biggest session."""
        candidates = [n for n in self.nodes.values() if n.refs == 0]
        if not candidates:
            return False
        biggest = max(self.per_session.get(n.session, 0) for n in candidates)
        victim = min((n for n in candidates if self.per_session.get(n.session, 0) == biggest),
                     key=lambda n: n.last_used)
        self._remove(victim)
        return True

    def _remove(self, node: Node) -> None:
        del node.parent.children[node.tokens]
        node.parent.refs -= 1
        del self.nodes[node.block_id]
        self._count(node.session, -1)
        self.free.append(node.block_id)
        self.evictions += 1

    def pin(self, block_ids: list[int]) -> None:
        for b in block_ids:
            self.nodes[b].refs += 1

    def unpin(self, block_ids: list[int]) -> None:
        for b in block_ids:
            self.nodes[b].refs -= 1

    def clear(self) -> None:
        self.__init__(self.num_blocks, self.block_size)

    @property
    def used_blocks(self) -> int:
        return len(self.nodes)


class BlockPool:
    """K/V storage for PrefixCache's blocks, and the copies into and out of the working slot.

    k, v: [layers, blocks, kv_heads, block_size, head_dim], allocated once; block b holds the K/V
    of PrefixCache node b's tokens. The slot's caches are [1, kv_heads, max_seq, head_dim] per
    layer, so sequence block j is positions [j * block_size, (j + 1) * block_size) there.
    `index` is None when `cache_mb` holds no whole block: the pool is then off.

    On the CPU the blocks live in anonymous memory (`untouched_zeros`): the OS hands it out zeroed
    and commits a page only when a block is first saved into it, so a server holds the pool's 64 MB
    only once it has seen that many tokens, and does not spend its start clearing them.
    """

    def __init__(self, caches: list[KVCache], cache_mb: float, block_size: int):
        self.caches, self.block_size = caches, block_size
        slot = caches[0].k
        kv_heads, head_dim = slot.shape[1], slot.shape[3]
        per_block = 2 * len(caches) * kv_heads * block_size * head_dim * slot.element_size()
        blocks = int(cache_mb * 2**20 // per_block)
        self.index = PrefixCache(blocks, block_size) if blocks > 0 else None
        shape = (len(caches), max(blocks, 0), kv_heads, block_size, head_dim)
        self.k = untouched_zeros(shape, slot.dtype, slot.device)
        self.v = untouched_zeros(shape, slot.dtype, slot.device)
        self.mb = blocks * per_block / 2**20

    def restore(self, block_ids: list[int], first_block: int) -> None:
        """Copy pool blocks into the slot, block i of the list at sequence block first_block + i."""
        bs, n = self.block_size, len(block_ids)
        start, end = first_block * bs, (first_block + n) * bs
        ids = torch.tensor(block_ids, device=self.k.device)
        for i, cache in enumerate(self.caches):
            # [n, kv, bs, hd] -> [kv, n * bs, hd]
            cache.k[0, :, start:end] = self.k[i, ids].transpose(0, 1).reshape(cache.k.shape[1], n * bs, -1)
            cache.v[0, :, start:end] = self.v[i, ids].transpose(0, 1).reshape(cache.v.shape[1], n * bs, -1)

    def save(self, new: list[tuple[int, int]]) -> None:
        """Copy slot blocks into the pool: (sequence block index, pool block id) pairs, as
        PrefixCache.insert returns them."""
        if not new:
            return
        bs = self.block_size
        end = (max(index for index, _ in new) + 1) * bs
        seq_blocks = torch.tensor([index for index, _ in new], device=self.k.device)
        ids = torch.tensor([block_id for _, block_id in new], device=self.k.device)
        for i, cache in enumerate(self.caches):
            kv = cache.k.shape[1]
            # slot [kv, end, hd] viewed as [kv, end / bs, bs, hd]; pool wants [blocks, kv, bs, hd]
            self.k[i, ids] = cache.k[0, :, :end].view(kv, -1, bs, cache.k.shape[-1])[:, seq_blocks].transpose(0, 1)
            self.v[i, ids] = cache.v[0, :, :end].view(kv, -1, bs, cache.v.shape[-1])[:, seq_blocks].transpose(0, 1)

    def clear(self) -> None:
        """Forget every block (the tensors keep their stale values: nothing points at them)."""
        if self.index is not None:
            self.index.clear()


def untouched_zeros(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Zeros of `shape`; on the CPU in an anonymous mapping, zero by the OS's guarantee and resident
    page by page as it is written (torch.zeros writes every page at once; torch.empty's memory may
    be recycled garbage). The tensor keeps the mapping alive."""
    nbytes = math.prod(shape) * dtype.itemsize
    if torch.device(device).type != "cpu" or nbytes == 0:
        return torch.zeros(shape, dtype=dtype, device=device)
    return torch.frombuffer(mmap.mmap(-1, nbytes), dtype=dtype).view(shape)
