"""Rate limits as a feature: `routes[].rate_limits`, the limiter stage (kept across reloads while the
Redis link and the lease period it renews are unchanged: its windows live on) and its status section."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.config.part import ConfigPart
from gateway.config.schema import GatewayConfig
from gateway.feature import Assembly, Feature, Placed
from gateway.ratelimit.config import NAME, LimitConfig, parse_route_part
from gateway.ratelimit.docs import DOCS
from gateway.ratelimit.stage import RateLimitStage, build_ratelimit_stage, lease_periods
from gateway.ratelimit.status import ratelimit_status
from gateway.redis.config import redis_config

PART: ConfigPart[None, tuple[LimitConfig, ...], None] = ConfigPart(
    NAME, docs=DOCS, route=parse_route_part, route_keys=("rate_limits",))


def _unchanged(config: GatewayConfig) -> object:
    # Rules are read from `ctx.route` per request: only the store and the renewal period bind an instance.
    return redis_config(config), lease_periods(config)[:1]


def _stages(assembly: Assembly, stage: RateLimitStage | None) -> Sequence[Placed]:
    return [("admit", stage)] if stage is not None else []


RATELIMIT: Feature[RateLimitStage] = Feature(
    PART, state=lambda assembly: build_ratelimit_stage(assembly.config), unchanged=_unchanged, stages=_stages,
    status=ratelimit_status)
