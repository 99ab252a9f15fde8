"""`balancer: inference`: send each request where its prompt prefix is cached and the queue is short.

The choice, among the endpoints that may take the request (healthy, not ejected, not full, not
already tried):

1. **Affinity**: the endpoint holding the longest run of the prompt's leading blocks in the prefix
   index (`gateway.upstream.prefix_index`), when that prefix is private to a session or shared by few
   (its traffic share times the endpoints is at most 1); the prefix's own hash picks among several
   holders, so every user of a group's document converges on one.
2. **The session's last endpoint**: a marker block per session records where its last request went
   (its history may end inside a block nothing else shares).
3. **A new group**: the system prompt (the messages before the first user message) fills a block and
   is not known to be widely shared: the home of its last whole block (`balance.home`: rendezvous
   hashing among the least loaded): the same order in every router.
4. **A new session**: otherwise (the system prompt every session shares belongs on every replica and
   must not pull all traffic to the first one that saw it) the home of the session key (system prompt
   + first user message, or the client's `user` / session header).
5. **Load guard** (`balance.Guard`): the endpoint chosen above is given up when it has too much in
   flight or was routed too many requests lately against the least routed endpoint with a free slot;
   the deepest match among the endpoints the guard admits takes the request.
6. **Fallback**: nothing to hash (no prompt): the least-loaded endpoint.

With `shared_index` the index also learns the other routers' decisions (`gateway.upstream.index_share`).

Load is the gateway's own in-flight count, or the server's running + waiting requests from its
`/metrics` when that is fresh and higher (other workers' and replicas' traffic), plus its waiting
requests once more: a queue costs more than a busy batch.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from gateway import metrics
from gateway.upstream.balance import Guard, home, least_loaded
from gateway.upstream.config import InferenceConfig
from gateway.upstream.prefix_index import PrefixIndex
from gateway.upstream.prompt_key import PromptKey

if TYPE_CHECKING:
    from gateway.upstream.pool import Endpoint

REASONS = ("affinity", "prefix", "session", "load", "fallback")


def session_marker(session: int) -> bytes:
    """A pseudo-block recorded with each prompt's blocks: where the session's last request went (its
    history may end inside a block no other request shares, or its prompt may have changed)."""
    return b"\x00session" + session.to_bytes(8, "little")


class InferenceBalancer:
    """One per pool (and per worker process): its prefix index and decision counters."""

    def __init__(self, pool_name: str, config: InferenceConfig) -> None:
        self.pool_name = pool_name
        self.config = config
        self.index = PrefixIndex(config.index_blocks)
        self._decisions = {r: metrics.routing_decisions_total.labels(pool_name, r) for r in REASONS}
        self._count = 0  # decisions, this router's and (with a shared index) the others'
        self._picks = 0  # this router's
        # Each decision's prompt, for other routers (`gateway.upstream.index_share`); None: local only.
        self.outbox: Callable[[tuple[bytes, ...], str, int], None] | None = None

    def load(self, endpoint: Endpoint, now: float) -> float:
        """The endpoint's load as this balancer sees it (see the module docstring)."""
        s = endpoint.signals
        if s is None or now - s.at > self.config.stale_after_s:
            return endpoint.in_flight
        return max(endpoint.in_flight, s.running + s.waiting) + s.waiting

    def learn(self, blocks: tuple[bytes, ...], endpoint: Endpoint, session: int) -> None:
        """Another router sent this prompt to `endpoint` (`gateway.upstream.index_share`): its blocks are
        probably cached there, and it counts in the endpoint's requests routed lately."""
        self.index.record(blocks, endpoint, session)
        self._count += 1
        endpoint.routed.decay(self._count)
        endpoint.routed.recent += 1.0

    def pick(self, candidates: list[Endpoint], key: PromptKey | None) -> Endpoint:
        self._count += 1
        self._picks += 1
        now = time.monotonic()
        loads = {e: self.load(e, now) for e in candidates}
        guard = Guard(self.config, candidates, loads, now, self._count, self._picks)
        if key is None or not key.blocks:
            return self._decide(least_loaded(candidates, loads), "fallback")
        blocks = key.blocks
        session = key.session if key.session is not None else int.from_bytes(blocks[-1][:8], "little")
        marker = session_marker(session)
        match = self.index.match(blocks, session)
        depth = match.depth
        holders = [e for e in candidates if depth.get(e, 0)]
        best = max((depth[e] for e in holders), default=0)
        holders = [e for e in holders if depth[e] == best]
        # A prefix is worth copies on its share of the endpoints: a group's document on one, the system
        # prompt every session shares on all. One copy: the first endpoint in the prefix's own hash order
        # among its holders, so every user of a group converges on one (extra copies left by the guard age
        # out). More: the session's home among all endpoints, the same for each of the session's steps
        # until its own history is held somewhere.
        n = len(candidates)
        if holders and match.share * n <= 1.0:
            if len(holders) > 1:
                prefix = int.from_bytes(match.block[:8], "little")
                holders = [max(holders, key=lambda e: hash((prefix, e.salt)))]
            target, reason = holders[0], "affinity"
        elif (last := self.index.holder(marker)) is not None and last in loads:
            target, reason = last, "session"  # where the session's last step went
        elif key.stable and self.index.share(stable := blocks[key.stable - 1], session) * n <= 1.0:
            target, reason = home(candidates, int.from_bytes(stable[:8], "little"), guard), "prefix"
        else:
            target, reason = home(candidates, session, guard), "session"
        if not guard.admits(target):
            # The deepest match among the endpoints the guard admits (a copy of the prefix elsewhere), the
            # least loaded among equals; none admitted (the least in flight has routed the most lately): the
            # least in flight, since a hot spot costs more than an uneven count.
            allowed = [e for e in candidates if guard.admits(e)] or [least_loaded(candidates, loads)]
            target = min(allowed, key=lambda e: (-depth.get(e, 0), loads[e], random.random()))
            reason = "load"
        routed = target.routed
        routed.blocks += len(blocks)
        routed.matched += depth.get(target, 0)
        return self._decide(target, reason, (*blocks, marker), session)

    def _decide(self, target: Endpoint, reason: str, blocks: tuple[bytes, ...] = (), session: int = 0) -> Endpoint:
        """Count the decision; remember (and tell the other routers) where the prompt's blocks and its
        session's marker went."""
        self._decisions[reason].inc()
        target.routed.requests += 1
        target.routed.recent += 1.0
        if blocks:
            self.index.record(blocks, target, session)
            if self.outbox is not None:
                self.outbox(blocks, target.url, session)
        return target
