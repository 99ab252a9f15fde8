"""Config for rate limits and the Redis connection. (Extended by the Redis rate-limit work.)"""

from __future__ import annotations

from typing import Any

from gateway.config.reader import Section


def parse_redis(sec: Section) -> Any:
    if sec.data:
        raise sec.error(next(iter(sec.data)), "redis is not supported yet")
    return None


def parse_route_limits(secs: list[Section]) -> list[Any]:
    if secs:
        raise secs[0].error("", "rate_limits are not supported yet")
    return []
