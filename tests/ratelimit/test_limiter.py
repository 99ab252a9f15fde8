"""Limiter semantics, the same for the Redis scripts and the in-memory implementation."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from gateway.ratelimit.config import BUCKETS_PER_WINDOW, QUOTA_KEYS, LimitConfig, Quota
from gateway.ratelimit.redis_limiter import RedisLimiter
from gateway.ratelimit.rules import Check, Rule
from gateway.redis.link import RedisLink


def quota(label: str, limit: int) -> Quota:
    kind, window_s = QUOTA_KEYS[label]
    window_ms = int(window_s * 1000)
    return Quota(label, kind, limit, window_ms, window_ms // BUCKETS_PER_WINDOW)


def rule(label: str, limit: int, key: str | None = None, lease_s: float = 30.0) -> Rule:
    cfg = LimitConfig(name="l", key=("subject",), quotas=(quota(label, limit),), lease_s=lease_s)
    return Rule(cfg, cfg.quotas[0], key or f"t:{{r}}:{label}:{uuid.uuid4().hex[:8]}")


def check(*rules: Rule, cost: int = 1) -> Check:
    """One request on these rules' keys, each charged `cost`."""
    return Check(rules, [cost] * len(rules))


async def admitted(limiter: Any, c: Check, member: str) -> bool:
    return bool(await limiter.acquire(c, member))


async def test_window_admits_exactly_the_limit(limiter: Any) -> None:
    base = rule("requests_per_minute", 5)
    checks = [check(base) for _ in range(8)]
    assert [await admitted(limiter, c, f"m{i}") for i, c in enumerate(checks)] == [True] * 5 + [False] * 3
    assert not checks[-1].admitted and 0 < checks[-1].retry_ms <= 60_000 + 3_000


async def test_counts_leave_the_window(limiter: Any) -> None:
    """Buckets that left the window stop counting (the Redis script then counts its buckets again)."""
    base = rule("requests_per_second", 3)
    assert all([await admitted(limiter, check(base), f"m{i}") for i in range(3)])
    assert not await admitted(limiter, check(base), "refused")
    await asyncio.sleep(1.2)
    later = check(base)
    assert await admitted(limiter, later, "later")
    assert later.remaining(0) == 2


async def test_sums_stay_exact_when_a_settled_bucket_goes(limiter: Any) -> None:
    base = rule("tokens_per_minute", 1000)
    first, second = check(base, cost=300), check(base, cost=300)
    assert await admitted(limiter, first, "a")
    assert await admitted(limiter, second, "b")
    await limiter.settle(first, "a", 0)  # both failed: released
    await limiter.settle(second, "b", 0)
    probe = check(base, cost=100)
    assert await admitted(limiter, probe, "c")
    assert probe.remaining(0) == 900
    await limiter.settle(probe, "c", 150)  # used more than it reserved
    after = check(base, cost=800)
    assert await admitted(limiter, after, "d")
    assert after.remaining(0) == 1000 - 150 - 800


async def test_remaining_and_reset_are_reported(limiter: Any) -> None:
    c = check(rule("requests_per_minute", 3))
    await limiter.acquire(c, "a")
    assert c.remaining(0) == 2 and 0 < c.reset_ms(0) <= 63_000


async def test_all_rules_or_nothing(limiter: Any) -> None:
    tight, loose = rule("requests_per_minute", 2), rule("requests_per_day", 10)
    for i in range(4):
        await limiter.acquire(check(tight, loose), f"m{i}")
    probe = check(loose)
    assert await admitted(limiter, probe, "x")
    assert probe.remaining(0) == 10 - 3  # the two refused requests did not count against the loose limit


async def test_a_refusal_by_a_later_rule_charges_none_of_the_earlier_ones(limiter: Any) -> None:
    loose, slots, tight = rule("requests_per_day", 10), rule("concurrent", 5), rule("requests_per_minute", 1)
    assert await admitted(limiter, check(loose, slots, tight), "first")
    refused = check(loose, slots, tight)
    assert not await admitted(limiter, refused, "second")
    assert refused.denied is tight
    probe = check(loose, slots)
    assert await admitted(limiter, probe, "probe")
    assert probe.remaining(0) == 10 - 2  # "first" and the probe, not the refused request
    assert probe.remaining(1) == 5 - 2


async def test_token_reservation_settles_to_usage(limiter: Any) -> None:
    base = rule("tokens_per_minute", 1000)
    first, second, third = (check(base, cost=400) for _ in range(3))
    assert await admitted(limiter, first, "a")
    assert await admitted(limiter, second, "b")
    assert not await admitted(limiter, third, "c")
    await limiter.settle(first, "a", 10)  # real usage was 10 tokens
    await limiter.settle(second, "b", None)  # no usage reported: the reservation stands
    again = check(base, cost=400)
    assert await admitted(limiter, again, "c")
    assert again.remaining(0) == 1000 - 10 - 400 - 400


async def test_released_reservation_frees_tokens(limiter: Any) -> None:
    base = rule("tokens_per_minute", 500)
    first = check(base, cost=500)
    assert await admitted(limiter, first, "a")
    assert not await admitted(limiter, check(base, cost=500), "b")
    await limiter.settle(first, "a", 0)
    assert await admitted(limiter, check(base, cost=500), "b")


async def test_concurrency_slots_are_released(limiter: Any) -> None:
    base = rule("concurrent", 2)
    a = check(base)
    assert await admitted(limiter, a, "a")
    assert await admitted(limiter, check(base), "b")
    assert not await admitted(limiter, check(base), "c")
    await limiter.settle(a, "a", None)
    assert await admitted(limiter, check(base), "c")


async def test_concurrency_lease_expires_unless_renewed(limiter: Any) -> None:
    base = rule("concurrent", 1, lease_s=0.3)
    assert await admitted(limiter, check(base), "dead-gateway")
    assert not await admitted(limiter, check(base), "b")
    await asyncio.sleep(0.4)
    assert await admitted(limiter, check(base), "b")  # the dead gateway's slot expired
    for _ in range(3):
        await asyncio.sleep(0.15)
        await limiter.renew([base], "b")
    assert not await admitted(limiter, check(base), "c")  # renewed: still held


async def test_scripts_reload_after_redis_lost_them(redis_link: RedisLink) -> None:
    """After Redis lost its script cache, the limiter's EVALSHA meets NOSCRIPT and the same call is sent
    again as EVAL with the source, which caches the script again: Redis's own command counters show both."""
    limiter = RedisLimiter(redis_link)
    assert await admitted(limiter, check(rule("requests_per_second", 1)), "a")
    await redis_link.client.script_flush()
    await redis_link.client.config_resetstat()
    assert await admitted(limiter, check(rule("requests_per_second", 1)), "a")
    stats = await redis_link.client.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] + stats["cmdstat_evalsha"].get("failed_calls", 0) >= 1
    assert stats["cmdstat_eval"]["calls"] == 1  # the resend with the source, exactly once
    shas = [script.sha for script in redis_link.scripts]
    assert any(await redis_link.client.script_exists(*shas))  # the acquire script is cached again
    await redis_link.client.config_resetstat()
    assert await admitted(limiter, check(rule("requests_per_second", 1)), "a")
    stats = await redis_link.client.info("commandstats")
    assert "cmdstat_eval" not in stats  # cached again: back to EVALSHA alone


def test_memory_limiter_forgets_idle_callers() -> None:
    """The in-memory limiter's sweep drops windows whose newest bucket left the window, and keeps the
    rest (memory follows the active callers only)."""
    from gateway.ratelimit.memory import MemoryLimiter

    now = [10_000_000]
    limiter = MemoryLimiter(clock=lambda: now[0])
    idle, busy = rule("requests_per_second", 5), rule("requests_per_minute", 5)
    assert limiter.try_acquire(check(idle), "a")
    assert limiter.try_acquire(check(busy), "a")
    now[0] += 5_000
    limiter._sweep(now[0])  # the second's buckets are gone; the minute's still count
    assert idle.key not in limiter.windows and busy.key in limiter.windows
    later = check(busy)
    assert limiter.try_acquire(later, "b") and later.remaining(0) == 3
    limiter._sweep(now[0] + 65_000)
    assert not limiter.windows
