"""Telemetry as a feature: `telemetry:`, `routes[].telemetry` and `pools[].prices`; its long-lived
object (tracer, usage recorder and store; kept while the section and Redis are unchanged) observes
every inference request; `/admin/usage`."""

from __future__ import annotations

from gateway.config.part import LIVE, ConfigPart, Reload
from gateway.config.schema import GatewayConfig
from gateway.feature import Assembly, Feature
from gateway.redis.config import redis_config
from gateway.telemetry.config import (
    NAME,
    Prices,
    RouteTelemetry,
    TelemetryConfig,
    parse_pool_part,
    parse_route_part,
    parse_top_part,
    telemetry_config,
)
from gateway.telemetry.docs import DOCS
from gateway.telemetry.runtime import Telemetry
from gateway.telemetry.usage_report import usage_routes

PART: ConfigPart[TelemetryConfig, RouteTelemetry, Prices] = ConfigPart(
    NAME,
    reload={"telemetry": Reload(LIVE, "a new exporter and usage recorder (queued spans of the old one are sent, "
                                      "its usage flushed)")},
    docs=DOCS,
    top=parse_top_part,
    top_keys=("telemetry",),
    route=parse_route_part,
    route_keys=("telemetry",),
    pool=parse_pool_part,
    pool_keys=("prices",),
)


def _telemetry(assembly: Assembly) -> Telemetry | None:
    config = telemetry_config(assembly.config)
    return Telemetry(config, redis_config(assembly.config)) if config is not None else None


def _unchanged(config: GatewayConfig) -> object:
    return telemetry_config(config), redis_config(config)


TELEMETRY: Feature[Telemetry] = Feature(PART, state=_telemetry, unchanged=_unchanged, admin_routes=usage_routes,
                                        observes=True)
