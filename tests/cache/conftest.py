"""Gateway configs with a cached route (the `redis_server` and `store` fixtures are tests/conftest.py's)."""

from __future__ import annotations

from typing import Any

from testkit.harness import RedisServer
from tests.conftest import gateway_config, with_redis


def cached_config(backends: list[Any], redis: RedisServer | None, **rule: Any) -> dict:
    cfg = gateway_config(backends)
    cfg["server"]["access_log"] = "off"
    cfg["routes"][0]["cache"] = {"ttl_s": 60, **rule}
    return with_redis(cfg, redis)
