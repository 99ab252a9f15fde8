"""How `balancer: inference` keeps load even (gateway.upstream.inference decides where prefixes go).

Two counts per endpoint: its load in flight (the gateway's own count, or the server's running and
waiting requests when fresh) and the requests routed to it lately (`RoutedShare.recent`, halved every
`HALVE_EVERY` decisions of the pool: this router's, and with a shared index the other routers' too).

The issue's bound is on requests *run*: "no replica runs more than 1.5x the requests of the least
loaded one while the others have free slots". A guard on in-flight load against the mean (what this
balancer had alone) lets a replica holding popular prefixes run 1.5x the mean, and so more than 1.5x
the least: requests that hit the cache finish sooner and hold fewer slots. So `Guard` bounds both:
in flight under `ceil(load_factor x (total + 1) / endpoints)` (no hot spot in a burst) or within
`SLACK` of the least loaded (light load: no cache hit given up for one request in flight), and routed
lately under `balance_ratio x floor + SLACK`, the floor being the least routed endpoint *with a free
slot* (one whose server reports waiting requests is full: the others may run more than it).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from hashlib import blake2b
from typing import TYPE_CHECKING

from gateway.upstream.config import InferenceConfig

if TYPE_CHECKING:
    from gateway.upstream.pool import Endpoint

HALVE_EVERY = 256  # decisions between two halvings of the counts
SLACK = 4.0  # requests an endpoint may be ahead (of `balance_ratio` x the floor; in flight, of the least)


def endpoint_salt(url: str) -> int:
    """The endpoint's rendezvous-hash salt: the same in every process (str hashes are not)."""
    return int.from_bytes(blake2b(url.encode(), digest_size=8).digest(), "little")


@dataclass(slots=True)
class RoutedShare:
    """Per endpoint: requests routed, and the prompt blocks the index predicted cached there."""

    requests: int = 0
    blocks: int = 0
    matched: int = 0
    recent: float = 0.0  # requests routed here lately (halved every `HALVE_EVERY` decisions of the pool)
    seen: int = 0  # the pool's decision count when `recent` was last brought up to date
    present: int = 0  # the number of this router's last decision with this endpoint among the candidates

    @property
    def predicted_hit_share(self) -> float | None:
        return self.matched / self.blocks if self.blocks else None

    def decay(self, count: int) -> None:
        """Bring `recent` to decision `count`: the halvings since `seen`, applied late (an endpoint that
        was no candidate for a while, ejected or unhealthy, ages like the others)."""
        missed = count // HALVE_EVERY - self.seen // HALVE_EVERY
        if missed > 0:
            self.recent *= 0.5 ** min(missed, 64)
        self.seen = count


class Guard:
    """Which endpoints may take the request (see the module docstring). An endpoint back among the
    candidates (readmitted, healthy again, discovered: no candidate at the previous decision) starts at
    the floor: a cold replica must not take everything until its count catches up."""

    __slots__ = ("bound", "ceiling", "floor", "loads")

    def __init__(self, config: InferenceConfig, candidates: list[Endpoint], loads: dict[Endpoint, float],
                 now: float, count: int, picks: int) -> None:
        self.loads = loads
        # At light load the proportional bound refuses an endpoint for one request in flight while the
        # others idle, and the request loses its cached prefix for nothing: a batching server takes a
        # few more requests at almost no cost, a prefill of the whole prompt elsewhere is not free.
        proportional = math.ceil(config.load_factor * (sum(loads.values()) + 1) / len(candidates))
        self.bound = max(proportional, min(loads.values()) + SLACK)
        stale = now - config.stale_after_s
        floor = math.inf
        back: list[RoutedShare] = []
        for e in candidates:
            routed = e.routed
            routed.decay(count)
            if routed.present < picks - 1:
                back.append(routed)
            elif routed.recent < floor and (e.signals is None or e.signals.at < stale or not e.signals.waiting):
                floor = routed.recent
            routed.present = picks
        if back:
            if floor == math.inf:
                floor = min(r.recent for r in back)
            for routed in back:
                routed.recent = max(routed.recent, floor)
        self.floor: float | None = None if floor == math.inf else floor  # None: no endpoint has a free slot
        self.ceiling = math.inf if self.floor is None else config.balance_ratio * self.floor + SLACK

    def admits(self, e: Endpoint) -> bool:
        return self.loads[e] < self.bound and e.routed.recent < self.ceiling


def home(endpoints: list[Endpoint], key: int, guard: Guard) -> Endpoint:
    """The first endpoint in `key`'s rendezvous-hash order among the nearly least loaded: in flight
    within max(1, a quarter of the mean) of the lowest, and within one request of the guard's floor in
    requests routed lately (consistent hashing with bounded loads). While the endpoints are about
    equally busy several qualify and every router computes the same order, so they agree without
    talking; when they are not, the least loaded win. The counts keep homes even at light load, where
    nothing stays in flight long enough to tell the endpoints apart; staying near the floor (well under
    the guard's ceiling) leaves room for what a new session or group brings later."""
    if len(endpoints) == 1:
        return endpoints[0]
    loads = guard.loads
    low = min(loads[e] for e in endpoints)
    slack = max(1.0, 0.25 * sum(loads[e] for e in endpoints) / len(endpoints))
    routed = math.inf if guard.floor is None else guard.floor + 1.0
    ranked = sorted(endpoints, key=lambda e: hash((key, e.salt)), reverse=True)
    return next((e for e in ranked if loads[e] <= low + slack and e.routed.recent < routed),
                next(e for e in ranked if loads[e] <= low + slack))


def least_loaded(candidates: list[Endpoint], loads: dict[Endpoint, float]) -> Endpoint:
    low = min(loads.values())
    tied = [e for e in candidates if loads[e] == low]
    return tied[0] if len(tied) == 1 else random.choice(tied)
