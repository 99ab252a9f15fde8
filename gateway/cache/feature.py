"""Response caching as a feature: `routes[].cache` and `memory_cache:`, the cache stage (kept across
reloads while its store is unchanged: its entries live on) and its status section."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.cache.config import (
    NAME,
    CacheRule,
    MemoryCacheConfig,
    memory_cache,
    parse_route_part,
    parse_top_part,
)
from gateway.cache.docs import DOCS
from gateway.cache.stage import CacheStage, build_cache_stage
from gateway.cache.status import cache_status
from gateway.config.part import LIVE, ConfigPart, Reload
from gateway.config.schema import GatewayConfig
from gateway.feature import Assembly, Feature, Placed
from gateway.redis.config import redis_config
from gateway.redis.link import LINK

PART: ConfigPart[MemoryCacheConfig, CacheRule, None] = ConfigPart(
    NAME,
    reload={"memory_cache": Reload(LIVE, "a new in-process cache store: its entries start empty")},
    docs=DOCS,
    top=parse_top_part,
    top_keys=("memory_cache",),
    route=parse_route_part,
    route_keys=("cache",),
)


def _unchanged(config: GatewayConfig) -> object:
    # Rules are read from `ctx.route` per request: only the store binds an instance.
    return redis_config(config), memory_cache(config)


def _stages(assembly: Assembly, stage: CacheStage | None) -> Sequence[Placed]:
    return [("answer", stage)] if stage is not None else []


CACHE: Feature[CacheStage] = Feature(
    PART, state=lambda assembly: build_cache_stage(assembly.config, assembly.state(LINK)), unchanged=_unchanged, stages=_stages,
    status=cache_status)
