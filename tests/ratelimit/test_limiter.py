"""Limiter semantics, the same for the Redis scripts and the in-memory implementation."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from gateway.ratelimit.config import BUCKETS_PER_WINDOW, QUOTA_KEYS, LimitConfig, Quota
from gateway.ratelimit.redis_client import RedisLink
from gateway.ratelimit.redis_limiter import RedisLimiter
from gateway.ratelimit.rules import Rule, Settlement


def quota(label: str, limit: int) -> Quota:
    kind, window_s = QUOTA_KEYS[label]
    window_ms = int(window_s * 1000)
    return Quota(label, kind, limit, window_ms, window_ms // BUCKETS_PER_WINDOW)


def rule(label: str, limit: int, cost: int = 1, key: str | None = None, lease_s: float = 30.0) -> Rule:
    cfg = LimitConfig(name="l", key=("subject",), quotas=(quota(label, limit),), lease_s=lease_s)
    return Rule(cfg, cfg.quotas[0], key or f"t:{{r}}:{label}:{uuid.uuid4().hex[:8]}", cost)


def fresh(r: Rule, cost: int | None = None) -> Rule:
    """A rule for the next request on the same key."""
    return Rule(r.limit, r.quota, r.key, r.cost if cost is None else cost)


async def test_window_admits_exactly_the_limit(limiter: Any) -> None:
    base = rule("requests_per_minute", 5)
    results = [await limiter.acquire([fresh(base)], f"m{i}") for i in range(8)]
    assert [d.admitted for d in results] == [True] * 5 + [False] * 3
    assert 0 < results[-1].retry_ms <= 60_000 + 3_000


async def test_counts_leave_the_window(limiter: Any) -> None:
    """Buckets that left the window stop counting (the Redis script then counts its buckets again)."""
    base = rule("requests_per_second", 3)
    assert all([(await limiter.acquire([fresh(base)], f"m{i}")).admitted for i in range(3)])
    assert not (await limiter.acquire([fresh(base)], "refused")).admitted
    await asyncio.sleep(1.2)
    later = fresh(base)
    assert (await limiter.acquire([later], "later")).admitted
    assert later.remaining == 2


async def test_sums_stay_exact_when_a_settled_bucket_goes(limiter: Any) -> None:
    base = rule("tokens_per_minute", 1000, cost=300)
    first, second = fresh(base), fresh(base)
    assert (await limiter.acquire([first], "a")).admitted
    assert (await limiter.acquire([second], "b")).admitted
    await limiter.settle([Settlement(first, -300), Settlement(second, -300)], "a")  # both failed: released
    probe = fresh(base, cost=100)
    assert (await limiter.acquire([probe], "c")).admitted
    assert probe.remaining == 900
    await limiter.settle([Settlement(probe, 50)], "c")  # used more than it reserved
    after = fresh(base, cost=800)
    assert (await limiter.acquire([after], "d")).admitted
    assert after.remaining == 1000 - 150 - 800


async def test_remaining_and_reset_are_reported(limiter: Any) -> None:
    base = rule("requests_per_minute", 3)
    r1 = fresh(base)
    await limiter.acquire([r1], "a")
    assert r1.remaining == 2 and 0 < r1.reset_ms <= 63_000


async def test_all_rules_or_nothing(limiter: Any) -> None:
    tight, loose = rule("requests_per_minute", 2), rule("requests_per_day", 10)
    for i in range(4):
        await limiter.acquire([fresh(tight), fresh(loose)], f"m{i}")
    probe = fresh(loose)
    assert (await limiter.acquire([probe], "x")).admitted
    assert probe.remaining == 10 - 3  # the two refused requests did not count against the loose limit


async def test_a_refusal_by_a_later_rule_charges_none_of_the_earlier_ones(limiter: Any) -> None:
    loose, slots, tight = rule("requests_per_day", 10), rule("concurrent", 5), rule("requests_per_minute", 1)
    assert (await limiter.acquire([fresh(loose), fresh(slots), fresh(tight)], "first")).admitted
    refused = await limiter.acquire([fresh(loose), fresh(slots), fresh(tight)], "second")
    assert not refused.admitted and refused.denied is not None and refused.denied.key == tight.key
    probe_loose, probe_slots = fresh(loose), fresh(slots)
    assert (await limiter.acquire([probe_loose, probe_slots], "probe")).admitted
    assert probe_loose.remaining == 10 - 2  # "first" and the probe, not the refused request
    assert probe_slots.remaining == 5 - 2


async def test_token_reservation_settles_to_usage(limiter: Any) -> None:
    base = rule("tokens_per_minute", 1000, cost=400)
    first, second, third = fresh(base), fresh(base), fresh(base)
    assert (await limiter.acquire([first], "a")).admitted
    assert (await limiter.acquire([second], "b")).admitted
    assert not (await limiter.acquire([third], "c")).admitted
    await limiter.settle([Settlement(first, 10 - 400)], "a")  # real usage was 10 tokens
    again = fresh(base)
    assert (await limiter.acquire([again], "c")).admitted
    assert again.remaining == 1000 - 10 - 400 - 400


async def test_released_reservation_frees_tokens(limiter: Any) -> None:
    base = rule("tokens_per_minute", 500, cost=500)
    first = fresh(base)
    assert (await limiter.acquire([first], "a")).admitted
    assert not (await limiter.acquire([fresh(base)], "b")).admitted
    await limiter.settle([Settlement(first, -500)], "a")
    assert (await limiter.acquire([fresh(base)], "b")).admitted


async def test_concurrency_slots_are_released(limiter: Any) -> None:
    base = rule("concurrent", 2)
    a, b = fresh(base), fresh(base)
    assert (await limiter.acquire([a], "a")).admitted
    assert (await limiter.acquire([b], "b")).admitted
    assert not (await limiter.acquire([fresh(base)], "c")).admitted
    await limiter.settle([Settlement(a, 0)], "a")
    assert (await limiter.acquire([fresh(base)], "c")).admitted


async def test_concurrency_lease_expires_unless_renewed(limiter: Any) -> None:
    base = rule("concurrent", 1, lease_s=0.3)
    assert (await limiter.acquire([fresh(base)], "dead-gateway")).admitted
    assert not (await limiter.acquire([fresh(base)], "b")).admitted
    await asyncio.sleep(0.4)
    held = fresh(base)
    assert (await limiter.acquire([held], "b")).admitted  # the dead gateway's slot expired
    for _ in range(3):
        await asyncio.sleep(0.15)
        await limiter.renew([held], "b")
    assert not (await limiter.acquire([fresh(base)], "c")).admitted  # renewed: still held


async def test_scripts_reload_after_redis_lost_them(redis_link: RedisLink) -> None:
    limiter = RedisLimiter(redis_link)
    await redis_link.client.script_flush()
    assert (await limiter.acquire([rule("requests_per_second", 1)], "a")).admitted
