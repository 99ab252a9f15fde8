"""`inference.shared_index` (gateway/upstream/index_share.py): routers exchange their prefix indexes
through a real redis-server, off the request path, and route on their own when Redis is down."""

from __future__ import annotations

import asyncio
import random
import struct
import time
from typing import Any

import pytest

from gateway.config.schema import EndpointConfig, PoolConfig
from gateway.upstream.config import NAME, InferenceConfig, PoolOptions, SharedIndexConfig
from gateway.upstream.index_share import MAX_PENDING, IndexShare, decode, encode
from gateway.upstream.pool import Pool
from gateway.upstream.prompt_key import prompt_key
from testkit.harness import RedisServer
from tests.upstream.conftest import seeded_random

URLS = [f"http://r{i}:8000" for i in range(4)]


_seeded = seeded_random(11)  # the balancers draw from `random`: repeatable distributions


def _router(redis_url: str, key: str, urls: list[str], retry_s: float = 1.0) -> tuple[Pool, IndexShare]:
    """One router's pool (its endpoints listed in `urls` order) and its exchange."""
    shared = SharedIndexConfig(redis_url=redis_url, key=key, interval_s=0.01, timeout_ms=200, retry_s=retry_s)
    pool = Pool(PoolConfig(name="p", endpoints=tuple(EndpointConfig(url=u) for u in urls), models=("m",),
                           balancer="inference",
                           sections={NAME: PoolOptions(inference=InferenceConfig(shared_index=shared))}))
    return pool, IndexShare(pool, shared)


def _group(g: int, user: int) -> Any:
    return prompt_key("m", {"messages": [{"role": "system", "content": f"document {g} " * 400},
                                         {"role": "user", "content": f"user {user} asks {random.random()}"}]})


def test_entries_round_trip_and_garbage_is_refused() -> None:
    blocks = tuple(bytes([i]) * 16 for i in range(5))
    entry = encode(b"router-1", [(blocks, URLS[1], 7), (blocks[:2], URLS[0], 2**64 - 1), (blocks, URLS[1], 9)])
    router, records = decode(entry)
    assert router == b"router-1"
    assert list(records) == [(blocks, URLS[1], 7), (blocks[:2], URLS[0], 2**64 - 1), (blocks, URLS[1], 9)]
    with pytest.raises((ValueError, struct.error)):
        list(decode(entry[:-3])[1])  # a record cut short
    with pytest.raises((ValueError, struct.error)):
        decode(b"short")


async def test_routers_agree_on_where_a_groups_prefix_lives(redis_server: RedisServer) -> None:
    key = f"test:share:{time.monotonic_ns()}"
    a, share_a = _router(redis_server.url, key, URLS)
    b, share_b = _router(redis_server.url, key, list(reversed(URLS)))  # another order: URLs name endpoints
    share_a.start()
    share_b.start()
    try:
        # Router A places 8 groups' first users, then other traffic.
        homes = {g: a.pick(None, _group(g, 0)).url for g in range(8)}
        for i in range(24):
            a.pick(None, prompt_key("m", {"messages": [{"role": "user", "content": f"unrelated {i} " * 200}]}))
        # Without the exchange, B knows none of them.
        assert not any(_held(b, _group(g, 1)) for g in range(8))
        await _until(lambda: share_b.received >= 32)
        # Now the other users of a group reaching B go where A put the group: its prefix is cached there.
        assert {g: _held(b, _group(g, 1)) for g in range(8)} == {g: [url] for g, url in homes.items()}
        assert {g: b.pick(None, _group(g, 1)).url for g in range(8)} == homes
        assert share_a.up and share_b.up and share_a.sent == 32
        # A router started later (a new gateway replica) reads the newest entries first: it starts warm.
        c, share_c = _router(redis_server.url, key, URLS)
        await share_c.exchange()
        await share_c.stop()
        assert {g: _held(c, _group(g, 1)) for g in range(8)} == {g: [url] for g, url in homes.items()}
    finally:
        await share_a.stop()
        await share_b.stop()


async def test_redis_down_routes_locally_and_recovers(tmp_path: Any) -> None:
    server = RedisServer().start()
    key = "test:share:down"
    a, share_a = _router(server.url, key, URLS, retry_s=0.1)
    b, share_b = _router(server.url, key, URLS, retry_s=0.1)
    share_a.start()
    share_b.start()
    try:
        await _until(lambda: share_a.up and share_b.up)
        server.stop()
        await _until(lambda: not share_a.up and share_a.failures > 0)
        started = time.perf_counter()
        for i in range(MAX_PENDING + 100):  # decisions go on, none waits on Redis, the queue is bounded
            a.pick(None, _group(i % 50, i))
        assert time.perf_counter() - started < 5.0
        assert len(share_a._pending) == MAX_PENDING
        assert not _held(b, _group(3, 0))
        server.start()  # same port: the exchange resumes by itself, B learns A's decisions
        await _until(lambda: share_a.up and share_b.received >= MAX_PENDING, timeout=10)
        assert _held(b, _group(3, 0)) == _held(a, _group(3, 0)) != []
    finally:
        await share_a.stop()
        await share_b.stop()
        server.stop()


def _held(pool: Pool, key: Any) -> list[str]:
    """The URLs holding the deepest run of the prompt's leading blocks in `pool`'s index."""
    assert pool.inference is not None
    depth = pool.inference.index.match(key.blocks, 0).depth
    best = max(depth.values(), default=0)
    return sorted(e.url for e, d in depth.items() if d == best and d)  # type: ignore[attr-defined]


async def _until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)
