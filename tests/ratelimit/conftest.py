"""Fixtures for the rate-limit tests: a private redis-server, limiters over it, gateways on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.ratelimit.memory import MemoryLimiter
from gateway.ratelimit.redis_limiter import RedisLimiter
from gateway.redis.config import RedisConfig
from gateway.redis.link import RedisLink
from testkit.harness import RedisServer


@pytest.fixture
async def redis_link(redis_server: RedisServer) -> AsyncIterator[RedisLink]:
    link = RedisLink(RedisConfig(url=redis_server.url, timeout_ms=500))
    RedisLimiter(link)  # registers the scripts before start
    await link.start()
    await link.client.flushdb()
    yield link
    await link.stop()


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: Any, redis_server: RedisServer) -> AsyncIterator[Any]:
    """The same semantics tests run against both implementations."""
    if request.param == "memory":
        yield MemoryLimiter()
        return
    link = RedisLink(RedisConfig(url=redis_server.url, timeout_ms=500))
    limiter = RedisLimiter(link)
    await link.start()
    await link.client.flushdb()
    yield limiter
    await link.stop()
