"""Fixtures for the cache tests: a private redis-server and gateway configs with a cached route."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from testkit.harness import RedisServer
from tests.conftest import gateway_config


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


def cached_config(backends: list[Any], redis: RedisServer | None, **rule: Any) -> dict:
    cfg = gateway_config(backends)
    cfg["server"]["access_log"] = "off"
    cfg["routes"][0]["cache"] = {"ttl_s": 60, **rule}
    if redis is not None:
        cfg["redis"] = {"url": redis.url, "timeout_ms": 1000}
    return cfg


@pytest.fixture(params=["memory", "redis"])
def store(request: Any, redis_server: RedisServer) -> RedisServer | None:
    """Run a test against the embedded in-memory cache and against Redis (emptied first)."""
    if request.param == "memory":
        return None
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()
    return redis_server
