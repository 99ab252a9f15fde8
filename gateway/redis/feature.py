"""The shared Redis store as a feature: the `redis:` keys. The rate limiter and the cache each build
their link from it (`gateway.redis.link.shared_link`)."""

from __future__ import annotations

from gateway.config.part import LIVE, ConfigPart, Reload
from gateway.feature import Feature
from gateway.redis.config import NAME, RedisConfig, parse_top_part
from gateway.redis.docs import DOCS

PART: ConfigPart[RedisConfig, None, None] = ConfigPart(
    NAME,
    reload={"redis": Reload(LIVE, "a new Redis link for the limiter and cache; shared counters stay in Redis")},
    docs=DOCS,
    top=parse_top_part,
    top_keys=("redis",),
)

REDIS: Feature[None] = Feature(PART)
