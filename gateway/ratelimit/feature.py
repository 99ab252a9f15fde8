"""Rate limits as a feature: `routes[].rate_limits`, the limiter stage (kept across reloads while the
Redis link and the lease period it renews are unchanged: its windows live on) and its status section."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.config.part import ConfigPart
from gateway.config.schema import GatewayConfig
from gateway.feature import Assembly, Feature, Placed, StateKey
from gateway.ratelimit.config import NAME, LimitConfig, parse_route_part
from gateway.ratelimit.docs import DOCS
from gateway.ratelimit.stage import RateLimitStage, build_ratelimit_stage, lease_periods
from gateway.ratelimit.status import ratelimit_status
from gateway.redis.config import redis_config
from gateway.redis.link import LINK
from gateway.redis.piggyback import Rider

RIDER: StateKey[Rider] = StateKey("cache")  # the cache feature's stage, the limiter's rider

PART: ConfigPart[None, tuple[LimitConfig, ...], None] = ConfigPart(
    NAME, docs=DOCS, route=parse_route_part, route_keys=("rate_limits",))


def _unchanged(config: GatewayConfig) -> object:
    # Rules are read from `ctx.route` per request: only the store and the renewal period bind an instance.
    return redis_config(config), lease_periods(config)[:1]


def _stages(assembly: Assembly, stage: RateLimitStage | None) -> Sequence[Placed]:
    if stage is None:
        return []
    # This version's cache rides the limiter's round trips when both use one single-node link (kept
    # limiters take the new version's cache: the lookups it plans are that version's).
    rider = assembly.state(RIDER)
    stage.rider = rider if rider is not None and stage.link is not None and stage.link.pipelined \
        and getattr(rider, "link", None) is stage.link else None
    return [("admit", stage)]


RATELIMIT: Feature[RateLimitStage] = Feature(
    PART, state=lambda assembly: build_ratelimit_stage(assembly.config, assembly.state(LINK)), unchanged=_unchanged, stages=_stages,
    status=ratelimit_status)
