"""The shared Redis store as a feature: the `redis:` keys and the link (connections, scripts, circuit
breaker) the rate limiter and the cache share: one per policy version, kept while `redis:` is unchanged."""

from __future__ import annotations

from gateway.config.part import LIVE, ConfigPart, Reload
from gateway.config.schema import GatewayConfig
from gateway.feature import Assembly, Feature
from gateway.redis.config import NAME, RedisConfig, parse_top_part, redis_config
from gateway.redis.docs import DOCS
from gateway.redis.link import RedisLink

PART: ConfigPart[RedisConfig, None, None] = ConfigPart(
    NAME,
    reload={"redis": Reload(LIVE, "a new Redis link for the limiter and cache; shared counters stay in Redis")},
    docs=DOCS,
    top=parse_top_part,
    top_keys=("redis",),
)

def _link(assembly: Assembly) -> RedisLink | None:
    config = redis_config(assembly.config)
    return RedisLink(config) if config is not None else None


def _unchanged(config: GatewayConfig) -> object:
    return redis_config(config)


REDIS: Feature[RedisLink] = Feature(PART, state=_link, unchanged=_unchanged)
