"""A route that is both rate limited and cached, on one Redis node: the limiter's two script calls carry
the cache's work (lookup with the check, store with the settlement)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import redis
import yaml

from gateway.cache.stage import CacheStage, Prefetch
from gateway.context import RequestContext, Usage
from gateway.features import load_config
from gateway.ingress.routing import RouteTable
from gateway.pipeline.stage import Stage
from gateway.ratelimit.stage import RateLimitStage
from gateway.redis.config import redis_config
from gateway.redis.link import RedisLink
from gateway.upstream.forward import Upstreams
from gateway.upstream.stage import PoolSelectStage
from testkit.harness import RedisServer
from tests.cache.conftest import cached_config

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3,
        "temperature": 0}
LIMITS = [{"name": "partner", "key": "subject", "requests_per_minute": 1000, "tokens_per_minute": 100_000,
           "concurrent": 10}]


def _limited_cached(backends: list[Any], server: RedisServer) -> dict:
    cfg = cached_config(backends, server)
    cfg["routes"][0]["rate_limits"] = LIMITS
    return cfg


def _script_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("evalsha", "eval"))


def _wait_calls(client: redis.Redis, expected: int) -> int:
    """on_complete runs after the client has its answer: give the last call a moment to land."""
    deadline = time.monotonic() + 2
    while _script_calls(client) < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    return _script_calls(client)


def test_two_redis_calls_per_miss_and_per_hit(redis_server: RedisServer, fake_backend: Any,
                                               make_gateway: Any) -> None:
    gw = make_gateway(_limited_cached([fake_backend], redis_server))
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    headers = {"authorization": f"Bearer {gw.token('calls')}"}
    client.config_resetstat()
    miss = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers=headers, timeout=10)
    assert miss.status_code == 200 and miss.headers["x-edgegw-cache"] == "MISS"
    assert _wait_calls(client, 2) == 2  # check + lookup, then settle + store
    client.config_resetstat()
    hit = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers=headers, timeout=10)
    assert hit.headers["x-edgegw-cache"] == "HIT" and hit.content == miss.content
    assert "ratelimit-remaining" in hit.headers
    assert _wait_calls(client, 2) == 2  # check + lookup, then settle (tokens back to 0, slot released)
    # Nothing left behind: no lock, no concurrency slot.
    assert not client.keys("*:lock")
    assert all(client.zcard(k) == 0 for k in client.keys("*:concurrent:*"))
    assert fake_backend.stats()["requests"] == 1


def test_lock_released_when_the_request_fails_before_the_cache(redis_server: RedisServer, fake_backend: Any,
                                                                make_gateway: Any) -> None:
    gw = make_gateway(_limited_cached([fake_backend], redis_server))
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    headers = {"authorization": f"Bearer {gw.token('nopool')}"}
    # The limiter's script takes the single-flight lock; pool selection then refuses the model.
    resp = httpx.post(gw.url + "/v1/chat/completions", json={**CHAT, "model": "no-such-model"}, headers=headers,
                      timeout=10)
    assert resp.status_code == 404
    deadline = time.monotonic() + 2
    while client.keys("*:lock") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not client.keys("*:lock")


@contextlib.asynccontextmanager
async def _stages(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[tuple[Any, ...]]:
    """The limiter and cache stages of a limited, cached route (no gateway), and a request for it that
    the limiter has already admitted and looked up; Redis starts empty."""
    cfg = _limited_cached([], redis_server)
    cfg["pools"][0]["endpoints"] = [{"url": "http://127.0.0.1:9"}]
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(cfg))
    config = load_config(path)
    link = RedisLink(redis_config(config))  # type: ignore[arg-type]
    limiter, cache = RateLimitStage(config, link), CacheStage(config, link)
    limiter.rider = cache  # as the features wire them (gateway.ratelimit.feature)
    await link.start()
    await limiter.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    try:
        ctx = RequestContext(request_id="r", method="POST", path="/v1/chat/completions", headers={},
                             client_ip="127.0.0.1")
        ctx.route, ctx.subject, ctx.model, ctx.body_json = config.routes[0], "alice", "fake-model", dict(CHAT)
        ctx.ran = [limiter]  # what the pipeline records: the stages run so far
        await limiter.on_request(ctx)
        yield config, limiter, cache, ctx, client
    finally:
        await limiter.stop()
        await link.stop()


async def test_prefetch_for_a_changed_request_is_not_used(redis_server: RedisServer, tmp_path: Path) -> None:
    """A plugin between the limiter and the cache rewrote the body: the cache looks up the new request and
    releases the lock taken for the old one."""
    async with _stages(redis_server, tmp_path) as (_, limiter, cache, ctx, client):
        pre = ctx.piggyback.lookup
        assert isinstance(pre, Prefetch) and (pre.entry, pre.took_lock) == (None, True)
        assert len(client.keys("*:lock")) == 1
        ctx.set_body_json({**CHAT, "messages": [{"role": "user", "content": "rewritten"}]})
        ctx.ran += [Stage(), cache]  # a stage that may rewrite the request (a plugin) ran between
        assert await cache.on_request(ctx) is None
        assert ctx.cache_status == "MISS"
        locks = client.keys("*:lock")
        assert len(locks) == 1 and pre.key.encode() not in locks[0]  # the new request's lock only
        ctx.status, ctx.usage = 200, Usage(3, 3)
        ctx.response_body = b'{"choices": []}'
        await cache.on_complete(ctx)
        await limiter.on_complete(ctx)
        await cache.link.drain()  # the settlement (and the store) are posted, not awaited
        assert not client.keys("*:lock")
        assert len(client.keys("*:c:*")) == 1  # the rewritten request's answer


async def test_prefetch_is_reused_when_no_stage_could_change_the_request(redis_server: RedisServer,
                                                                         tmp_path: Path) -> None:
    """Only stages that never rewrite the request (pool selection) ran in between: the cache answers from
    the limiter's lookup without computing the key again."""
    async with _stages(redis_server, tmp_path) as (config, limiter, cache, ctx, client):
        pre = ctx.piggyback.lookup
        assert isinstance(pre, Prefetch)
        ctx.ran += [PoolSelectStage(RouteTable(config), Upstreams(config.pools)), cache]
        # Not a rewrite a real pipeline could make here; it shows the key is not recomputed.
        ctx.body_json = {**CHAT, "temperature": 0.7}
        assert await cache.on_request(ctx) is None
        assert ctx.cache_status == "MISS" and ctx.cache_pending.key == pre.key
        ctx.status, ctx.usage, ctx.response_body = 200, Usage(3, 3), b'{"choices": []}'
        await cache.on_complete(ctx)
        await limiter.on_complete(ctx)
        await cache.link.drain()
        assert len(client.keys(f"*{pre.key}*")) == 1 and not client.keys("*:lock")  # stored under it


async def test_single_flight_with_limits(redis_server: RedisServer, fake_backend: Any, make_gateway: Any) -> None:
    """The lock taken by the limiter's script holds identical misses, in this replica and the other."""
    cfg = _limited_cached([fake_backend], redis_server)
    gateways = [make_gateway(cfg) for _ in range(2)]
    redis.Redis.from_url(redis_server.url).flushdb()
    headers = {"authorization": f"Bearer {gateways[0].token('flight')}", "x-fake-fault": "slow:0.5"}
    async with httpx.AsyncClient(headers=headers, timeout=10) as client:
        responses = await asyncio.gather(*(client.post(gateways[i % 2].url + "/v1/chat/completions", json=CHAT)
                                           for i in range(8)))
    assert all(r.status_code == 200 for r in responses)
    assert sorted(r.headers["x-edgegw-cache"] for r in responses) == ["HIT"] * 7 + ["MISS"]
    assert fake_backend.stats()["requests"] == 1
