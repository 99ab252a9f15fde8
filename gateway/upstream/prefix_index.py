"""Which endpoints each prompt prefix was sent to: a bounded LRU of chained block hashes.

It mirrors, approximately, what the model servers' prefix caches hold: a block routed to an endpoint
is probably cached there until it ages out. Entries remember the endpoint's affinity epoch, so an
endpoint that failed or was ejected loses all its affinity at once (its cache may be gone) without a
sweep over the index.

Each block also counts the sessions that carried it (a change of session between two of its requests
counts one more), against all requests routed since it was first seen: its share of the traffic. A
prefix every session shares (an agent's system prompt) has a share near 1 and should live on every
replica; a group's document shared by a few users has a small share and belongs on one; a prefix
one session alone has carried (its own history) is not shared at all, whatever its request count.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

HOLDERS = 4  # endpoints remembered per block, most recent first


class Holder(Protocol):
    """An endpoint as the index sees it."""

    affinity_epoch: int


@dataclass(slots=True)
class _Block:
    since: int  # the index's request count when the block was first routed
    session: int  # the last session that carried it
    sessions: int = 1  # changes of session among the requests that carried it, plus one
    holders: list[tuple[Holder, int]] = field(default_factory=list)  # (endpoint, its epoch then)


@dataclass(slots=True)
class Match:
    """How many leading blocks each live holder has, and the traffic share of the deepest one held."""

    depth: dict[Holder, int]
    share: float
    block: bytes = b""  # the deepest block held (the prefix's own key)


class PrefixIndex:
    """Block hash -> recent holders, at most `capacity` blocks (least recently routed dropped first)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.requests = 0
        self._blocks: OrderedDict[bytes, _Block] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def match(self, blocks: tuple[bytes, ...], session: int) -> Match:
        """The live holders of the prompt's leading blocks; the share counts `session` in (a second
        session asking for a prefix is what makes it shared)."""
        depth: dict[Holder, int] = {}
        deepest: _Block | None = None
        deepest_key = b""
        get = self._blocks.get
        for i, block in enumerate(blocks):
            entry = get(block)
            if entry is None:
                break  # a chained block is only known if the blocks before it were routed too
            found = False
            for holder, epoch in entry.holders:
                if holder.affinity_epoch == epoch:
                    depth[holder] = i + 1
                    found = True
            if not found:
                break
            deepest, deepest_key = entry, block
        return Match(depth, self._share(deepest, session) if deepest is not None else 0.0, deepest_key)

    def holder(self, block: bytes) -> Holder | None:
        """Where `block` was last sent, while that endpoint's affinity holds."""
        entry = self._blocks.get(block)
        if entry is None:
            return None
        holder, epoch = entry.holders[0]
        return holder if holder.affinity_epoch == epoch else None

    def share(self, block: bytes, session: int) -> float:
        """The traffic share of one block, `session` counted in (0: unknown, or one session's alone)."""
        entry = self._blocks.get(block)
        return self._share(entry, session) if entry is not None else 0.0

    def _share(self, entry: _Block, session: int) -> float:
        sessions = entry.sessions + (entry.session != session)
        return min(1.0, sessions / max(1, self.requests + 1 - entry.since)) if sessions > 1 else 0.0

    def record(self, blocks: tuple[bytes, ...], holder: Holder, session: int) -> None:
        """The prompt of `session` went to `holder`: each of its blocks is now (also) there, most
        recently."""
        self.requests += 1
        pair = (holder, holder.affinity_epoch)
        table = self._blocks
        # Last block first: a prompt's first blocks end up the most recent, so eviction never leaves
        # a later block without the ones before it.
        for block in reversed(blocks):
            entry = table.get(block)
            if entry is None:
                table[block] = _Block(self.requests - 1, session, 1, [pair])
                continue
            table.move_to_end(block)
            if entry.session != session:
                entry.session = session
                entry.sessions += 1
            holders = entry.holders
            if holders[0][0] is holder:
                holders[0] = pair
            else:
                holders[:] = [pair, *(h for h in holders if h[0] is not holder and h[0].affinity_epoch == h[1])][:HOLDERS]
        while len(table) > self.capacity:
            table.popitem(last=False)
