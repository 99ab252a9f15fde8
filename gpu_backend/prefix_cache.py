"""The prefix cache: the KV of prompt prefixes computed before, reused by later prompts that start the same way.

Prompts are cut into blocks of `BLOCK_TOKENS` positions. A block is identified by its parent block and its
own items, so it matches only when everything before it matched too, and identity is exact (dictionary keys,
no hash that could collide). Only full blocks are cached, and a lookup never covers a prompt's last
position: its logits have to be computed.

Memory is bounded by the operator (`--prefix-cache-mb`). Every lookup and store touches its chain from the
deepest block up to the first, so a block is always more recent than the blocks after it, and evicting the
least recently used block always removes a leaf: whatever is cached, its whole prefix is cached too.

Keys: a prompt is looked up by one hashable item per position, its token ids by default, or the
`cache_key` given to `Engine.submit` (for example the token ids with each image position replaced by
something derived from the image's content). An image-text-to-text engine also cuts a prompt's key before
its first image placeholder (`Sequence.cacheable`, set by `VisionBatch`): images are always computed fresh.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import torch

BLOCK_TOKENS = 16  # vLLM's default block size: small enough to share most of a prefix, large enough to be cheap

BlockKey = tuple[int, tuple[Hashable, ...]]  # (parent block id or 0, this block's items)


@dataclass(eq=False)
class CachedBlock:
    """The KV of one block of positions: [layers, 2 (keys, values), kv_heads, BLOCK_TOKENS, head_dim]."""

    id: int
    key: BlockKey
    kv: torch.Tensor

    @property
    def nbytes(self) -> int:
        return self.kv.numel() * self.kv.element_size()


class PrefixCache:
    """Blocks of prompt KV keyed by their prefix, least recently used evicted past `capacity_bytes`.

    Used by the engine thread only (no locking). `capacity_bytes` 0 disables it.
    """

    def __init__(self, capacity_bytes: int, block_tokens: int = BLOCK_TOKENS) -> None:
        self.capacity_bytes = capacity_bytes
        self.block_tokens = block_tokens
        self.bytes = 0
        self._blocks: OrderedDict[BlockKey, CachedBlock] = OrderedDict()
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._blocks)

    def match(self, key: Sequence[Hashable]) -> list[CachedBlock]:
        """The cached blocks `key` starts with, in order, never covering its last position."""
        chain = self._walk(key, (len(key) - 1) // self.block_tokens)
        self._touch(chain)
        return chain

    def store(self, key: Sequence[Hashable], kv_of: Callable[[int, int], torch.Tensor]) -> None:
        """Cache every full block of `key`. `kv_of(start, end)` returns the KV of positions start..end-1 as
        [layers, 2, kv_heads, end - start, head_dim]; it is called at most once, for the blocks not cached."""
        if self.capacity_bytes <= 0:
            return
        size, full = self.block_tokens, len(key) // self.block_tokens
        chain = self._walk(key, full)
        if len(chain) < full:
            start = len(chain) * size
            kv = kv_of(start, full * size)
            parent = chain[-1].id if chain else 0
            for i in range(len(chain), full):
                block_key = (parent, tuple(key[i * size: (i + 1) * size]))
                # A copy with its own storage: evicting the block then really frees its memory.
                data = kv[:, :, :, i * size - start: (i + 1) * size - start].clone()
                block = CachedBlock(next(self._ids), block_key, data)
                self._blocks[block_key] = block
                self.bytes += block.nbytes
                chain.append(block)
                parent = block.id
        self._touch(chain)
        self._evict()

    def clear(self) -> None:
        self._blocks.clear()
        self.bytes = 0

    def _walk(self, key: Sequence[Hashable], blocks: int) -> list[CachedBlock]:
        chain: list[CachedBlock] = []
        parent, size = 0, self.block_tokens
        for i in range(blocks):
            block = self._blocks.get((parent, tuple(key[i * size: (i + 1) * size])))
            if block is None:
                break
            chain.append(block)
            parent = block.id
        return chain

    def _touch(self, chain: list[CachedBlock]) -> None:
        for block in reversed(chain):  # deepest first: each block ends up more recent than its descendants
            self._blocks.move_to_end(block.key)

    def _evict(self) -> None:
        while self.bytes > self.capacity_bytes and self._blocks:
            _, block = self._blocks.popitem(last=False)
            self.bytes -= block.nbytes
