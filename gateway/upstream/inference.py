"""`balancer: inference`: send each request where its prompt prefix is cached and the queue is short.

The choice, among the endpoints that may take the request (healthy, not ejected, not full, not
already tried):

1. **Affinity**: the endpoint holding the longest run of the prompt's leading blocks in this worker's
   prefix index (`gateway.upstream.prefix_index`), when that prefix is private to a session or shared
   by few (its traffic share times the endpoints is at most 1); the prefix's own hash picks among
   several holders, so every user of a group's document converges on one.
2. **Session**: no endpoint holds any of it, or the longest run held is a prefix carrying more of
   the traffic than one endpoint's share (the system prompt every session shares: it belongs on
   every replica, and must not pull all traffic to the first one that saw it). Rendezvous hashing on
   the session key (system prompt + first user message, or the client's `user` / session header)
   picks the first endpoint in the key's order that is nearly least loaded: in flight within
   max(1, a quarter of the mean) of the lowest, and no more than 1.1x the mean of the requests routed
   lately (+1). Every worker and gateway replica computes the same order, so while the endpoints are
   about equally busy they agree on a new session's home without talking to each other; when they
   are not, the least loaded win.
3. **Load guard**: the endpoint chosen above is given up when its load reaches the bound,
   `ceil(load_factor * (total load + 1) / endpoints)`: the least-loaded endpoint takes the request
   (the prefix match breaks ties), so affinity never builds a hot spot.
4. **Fallback**: nothing to hash (no prompt): the least-loaded endpoint.

Load is the gateway's own in-flight count, or the server's running + waiting requests from its
`/metrics` when that is fresh and higher (other workers' and replicas' traffic), plus its waiting
requests once more: a queue costs more than a busy batch.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from hashlib import blake2b
from typing import TYPE_CHECKING

from gateway import metrics
from gateway.upstream.config import InferenceConfig
from gateway.upstream.prefix_index import PrefixIndex
from gateway.upstream.prompt_key import PromptKey

if TYPE_CHECKING:
    from gateway.upstream.pool import Endpoint

REASONS = ("affinity", "session", "load", "fallback")
_HALVE_EVERY = 256
_SLACK = 4.0  # requests an endpoint may be ahead of `balance_ratio` x the floor: a few sessions' steps


def endpoint_salt(url: str) -> int:
    """The endpoint's rendezvous-hash salt: the same in every process (str hashes are not)."""
    return int.from_bytes(blake2b(url.encode(), digest_size=8).digest(), "little")


@dataclass(slots=True)
class RoutedShare:
    """Per endpoint: requests routed, and the prompt blocks the index predicted cached there."""

    requests: int = 0
    blocks: int = 0
    matched: int = 0
    recent: float = 0.0  # requests routed here lately (halved every `_HALVE_EVERY` decisions of the pool)
    seen: int = 0  # the pool's decision count when this endpoint was last a candidate

    @property
    def predicted_hit_share(self) -> float | None:
        return self.matched / self.blocks if self.blocks else None


class InferenceBalancer:
    """One per pool (and per worker process): its prefix index and decision counters."""

    def __init__(self, pool_name: str, config: InferenceConfig) -> None:
        self.pool_name = pool_name
        self.config = config
        self.index = PrefixIndex(config.index_blocks)
        self._decisions = {r: metrics.routing_decisions_total.labels(pool_name, r) for r in REASONS}
        self._count = 0
        # Each decision's prompt, for other routers (`gateway.upstream.index_share`); None: local only.
        self.outbox: Callable[[tuple[bytes, ...], str, int], None] | None = None

    def load(self, endpoint: Endpoint, now: float) -> float:
        """The endpoint's load as this balancer sees it (see the module docstring)."""
        s = endpoint.signals
        if s is None or now - s.at > self.config.stale_after_s:
            return endpoint.in_flight
        return max(endpoint.in_flight, s.running + s.waiting) + s.waiting

    def pick(self, candidates: list[Endpoint], key: PromptKey | None) -> Endpoint:
        count = self._count = self._count + 1
        if count % _HALVE_EVERY == 0:
            for e in candidates:
                e.routed.recent *= 0.5
        now = time.monotonic()
        loads = {e: self.load(e, now) for e in candidates}
        guard = _Guard(self.config, candidates, loads, now, count)
        if key is None or not key.blocks:
            return self._decide(_least_loaded(candidates, loads), "fallback", None)
        session = key.session if key.session is not None else int.from_bytes(key.blocks[-1][:8], "little")
        match = self.index.match(key.blocks, session)
        depth = match.depth
        holders = [e for e in candidates if depth.get(e, 0)]
        best = max((depth[e] for e in holders), default=0)
        holders = [e for e in holders if depth[e] == best]
        # A prefix is worth copies on its share of the endpoints: a group's document on one, the system
        # prompt every session shares on all. One copy: the first endpoint in the prefix's own hash order
        # among its holders, so every user of a group converges on one (extra copies left by the guard age
        # out). More: the session's home among all endpoints, the same for each of the session's steps
        # until its own history is held somewhere.
        if holders and match.share * len(candidates) <= 1.0:
            if len(holders) > 1:
                prefix = int.from_bytes(match.block[:8], "little")
                holders = [max(holders, key=lambda e: hash((prefix, e.salt)))]
            target, reason = holders[0], "affinity"
        else:
            target, reason = _home(candidates, session, loads, guard.floor), "session"
        if not guard.admits(target):
            # The deepest match among the endpoints the guard admits (a copy of the prefix elsewhere), the
            # least loaded among equals; none admitted (the least in flight has routed the most lately): the
            # least in flight, since a hot spot costs more than an uneven count.
            allowed = [e for e in candidates if guard.admits(e)] or [_least_loaded(candidates, loads)]
            target = min(allowed, key=lambda e: (-depth.get(e, 0), loads[e], random.random()))
            reason = "load"
        return self._decide(target, reason, key, depth.get(target, 0), session)

    def _decide(self, target: Endpoint, reason: str, key: PromptKey | None, matched: int = 0,
                session: int = 0) -> Endpoint:
        self._decisions[reason].inc()
        share = target.routed
        share.requests += 1
        share.recent += 1.0
        if key is not None:
            share.blocks += len(key.blocks)
            share.matched += matched
            self.index.record(key.blocks, target, session)
            if self.outbox is not None:
                self.outbox(key.blocks, target.url, session)
        return target


class _Guard:
    """Who may take a request: in flight under `ceil(load_factor x (total + 1) / endpoints)` (no hot spot),
    and routed lately less than `balance_ratio` times the least routed endpoint with a free slot, plus
    `_SLACK` (the requests each endpoint runs stay even; an endpoint whose server queues requests has no free
    slot and sets no floor). An endpoint back among the candidates (readmitted, healthy again, discovered)
    starts at that floor: a cold replica must not take everything until its count catches up."""

    __slots__ = ("_bound", "_ceiling", "_loads", "floor")

    def __init__(self, config: InferenceConfig, candidates: list[Endpoint], loads: dict[Endpoint, float],
                 now: float, count: int) -> None:
        self._loads = loads
        self._bound = math.ceil(config.load_factor * (sum(loads.values()) + 1) / len(candidates))
        stale = now - config.stale_after_s
        floor = min((e.routed.recent for e in candidates
                     if e.signals is None or e.signals.at < stale or not e.signals.waiting), default=None)
        for e in candidates:
            routed = e.routed
            if routed.seen < count - 1 and floor is not None and routed.recent < floor:
                routed.recent = floor
            routed.seen = count
        self.floor = floor  # None: every endpoint queues (no free slot anywhere)
        self._ceiling = math.inf if floor is None else config.balance_ratio * floor + _SLACK

    def admits(self, e: Endpoint) -> bool:
        return self._loads[e] < self._bound and e.routed.recent < self._ceiling


def _home(endpoints: list[Endpoint], session: int, loads: dict[Endpoint, float], floor: float | None) -> Endpoint:
    """The first endpoint in the session's hash order among the (nearly) least loaded, in flight and
    in requests routed lately (consistent hashing with bounded loads): while the endpoints are about
    equally busy they all qualify and workers and replicas agree; the counts keep homes even at light
    load, where nothing stays in flight long enough to tell the endpoints apart. Routed lately means
    close to the floor of the guard, well under its ceiling: a new session brings its later steps."""
    if len(endpoints) == 1:
        return endpoints[0]
    low = min(loads[e] for e in endpoints)
    slack = max(1.0, 0.25 * sum(loads[e] for e in endpoints) / len(endpoints))
    routed = math.inf if floor is None else 1.1 * floor + 1.0
    ranked = sorted(endpoints, key=lambda e: hash((session, e.salt)), reverse=True)
    return next((e for e in ranked if loads[e] <= low + slack and e.routed.recent <= routed),
                next(e for e in ranked if loads[e] <= low + slack))


def _least_loaded(candidates: list[Endpoint], loads: dict[Endpoint, float]) -> Endpoint:
    low = min(loads.values())
    tied = [e for e in candidates if loads[e] == low]
    return tied[0] if len(tied) == 1 else random.choice(tied)
