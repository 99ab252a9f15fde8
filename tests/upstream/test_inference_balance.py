"""In process: how `balancer: inference` keeps the replicas' request counts even (the guard on requests
routed lately, against the least routed replica with a free slot) and how routers that never talk
place a shared prefix alike (its system prompt's hash)."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from gateway.config.schema import EndpointConfig, PoolConfig
from gateway.upstream.config import NAME, InferenceConfig, PoolOptions
from gateway.upstream.pool import Pool
from gateway.upstream.prompt_key import prompt_key
from gateway.upstream.signals import EndpointSignals
from tests.upstream.conftest import seeded_random

URLS = [f"http://r{i}:8000" for i in range(4)]


_seeded = seeded_random(3)  # the balancers draw from `random`: repeatable distributions


def _pool(urls: list[str] = URLS) -> Pool:
    return Pool(PoolConfig(name="p", endpoints=tuple(EndpointConfig(url=u) for u in urls), models=("m",),
                           balancer="inference", sections={NAME: PoolOptions(inference=InferenceConfig())}))


def _group(g: int, user: Any) -> Any:
    return prompt_key("m", {"messages": [{"role": "system", "content": f"document {g} " * 500},
                                         {"role": "user", "content": f"user {user} asks"}]})


def _skewed(n: int, rnd: random.Random) -> Iterator[int]:
    """Group numbers of `n` requests, the first groups far more popular (Zipf-like over 24 groups)."""
    weights = [1 / (g + 1) for g in range(24)]
    return iter(rnd.choices(range(24), weights, k=n))


def _run(pool: Pool, groups: Iterator[int]) -> tuple[Counter[str], dict[int, Counter[str]]]:
    per_host: Counter[str] = Counter()
    per_group: dict[int, Counter[str]] = {}
    for i, g in enumerate(groups):
        url = pool.pick(None, _group(g, i)).url
        per_host[url] += 1
        per_group.setdefault(g, Counter())[url] += 1
    return per_host, per_group


def _on_home(per_group: dict[int, Counter[str]]) -> float:
    """The share of requests that reached their group's most used replica."""
    return sum(c.most_common(1)[0][1] for c in per_group.values()) / sum(sum(c.values()) for c in per_group.values())


def test_requests_stay_within_the_bound_however_popular_the_groups() -> None:
    # Nothing stays in flight (short requests): a guard on in-flight counts alone never fires, and the
    # replica holding the popular groups would run them all.
    per_host, per_group = _run(_pool(), _skewed(3000, random.Random(1)))
    assert len(per_host) == 4 and max(per_host.values()) <= 1.3 * min(per_host.values()), per_host
    assert _on_home(per_group) >= 0.7, per_group  # and the groups mostly keep their replica


def test_a_replica_without_free_slots_sets_no_floor() -> None:
    pool = _pool()
    full = pool.endpoints[3]
    per_host: Counter[str] = Counter()
    per_group: dict[int, Counter[str]] = {}
    rnd = random.Random(2)
    for i in range(1200):
        # Another gateway keeps it busy: its server queues requests (fresh signals).
        full.signals = EndpointSignals(waiting=8, running=64, kv=0.99, at=time.monotonic())
        g = rnd.randrange(24)
        url = pool.pick(None, _group(g, i)).url
        per_host[url] += 1
        per_group.setdefault(g, Counter())[url] += 1
    others = [per_host[u] for u in URLS[:3]]
    assert per_host[full.url] < 0.1 * min(others), per_host
    # The free replicas stay even among themselves, and the groups keep their replicas: the busy one's
    # low count does not make every other replica look over its share.
    assert max(others) <= 1.3 * min(others), per_host
    assert _on_home(per_group) >= 0.8, per_group


def test_a_readmitted_replica_does_not_take_everything() -> None:
    pool = _pool()
    rnd = random.Random(4)
    _run(pool, iter([rnd.randrange(24) for _ in range(400)]))
    back = pool.endpoints[0]
    pool.eject(back)
    _run(pool, iter([rnd.randrange(24) for _ in range(400)]))
    pool.readmit(back)
    per_host, _ = _run(pool, iter([rnd.randrange(24) for _ in range(80)]))
    # Its count starts at the others' floor, not at what it had before its ejection: it takes its share
    # of new placements, not every request until its count catches up.
    assert per_host[back.url] <= 30, per_host


def test_fresh_routers_place_a_group_alike_whoever_asks_first() -> None:
    a = _pool()
    b = _pool(list(reversed(URLS)))  # endpoints listed in another order: hashes are per URL
    # Each router sees a different first user of each group (a session key of its own).
    placed_a = {g: a.pick(None, _group(g, "alice")).url for g in range(12)}
    placed_b = {g: b.pick(None, _group(g, "bob")).url for g in range(12)}
    assert placed_a == placed_b
    assert len(set(placed_a.values())) == 4
    # The agent's system prompt, shared by every session, pulls nothing together: once seen shared, new
    # sessions spread by their own keys.
    system = "You are a phone agent. " * 400
    hosts = Counter(a.pick(None, prompt_key("m", {"messages": [{"role": "system", "content": system},
                                                                {"role": "user", "content": f"task {s}"}]})).url
                    for s in range(40))
    assert len(hosts) == 4 and max(hosts.values()) <= 1.5 * min(hosts.values()), hosts
