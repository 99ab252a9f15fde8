"""The `telemetry:` section of the policy (traces, GenAI metrics, per-partner usage) and its route and
pool parts (`routes[].telemetry`, `pools[].prices`). Parsed once, at load time."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import cast

from edgecore.otel import ExportSettings, parse_headers, settings_from_env, traces_url
from gateway.config.part import Frame
from gateway.config.reader import Section
from gateway.config.schema import GatewayConfig, PoolConfig, RouteConfig

NAME = "telemetry"

USAGE_DIMENSIONS = ("issuer", "subject", "model", "route")  # plus `claim:NAME` (a JWT claim such as tenant)
DEFAULT_MAX_SERIES = 1000


@dataclass(frozen=True)
class UsageConfig:
    """Per-partner usage counters (`docs/observability.md`)."""

    labels: tuple[str, ...] = USAGE_DIMENSIONS  # what a series is keyed by
    max_series: int = DEFAULT_MAX_SERIES  # distinct label sets per worker; more count as `other`
    retention_h: int = 24 * 35  # hourly buckets kept (Redis and in memory)


@dataclass(frozen=True)
class TelemetryConfig:
    """Present (even empty) turns on the GenAI metrics and usage counters; traces need an endpoint."""

    export: ExportSettings | None = None  # None: no traces
    trust_traceparent: bool = True  # continue a client's W3C trace context (false: untrusted clients)
    usage: UsageConfig | None = UsageConfig()


@dataclass(frozen=True)
class RouteTelemetry:
    """`routes[].telemetry`: what a route's spans may carry beyond the defaults."""

    record_content: bool = False  # prompt and answer text on the inference span (opt-in: it is partner data)


@dataclass(frozen=True)
class ModelPrice:
    """`pools[].prices.MODEL`: turns usage tokens into cost (`edgegw usage`, `/admin/usage`)."""

    input_per_1m: float = 0.0
    output_per_1m: float = 0.0
    cached_input_per_1m: float | None = None  # None: cached input tokens cost as other input tokens

    def cost(self, input_tokens: int, output_tokens: int, cached_tokens: int = 0) -> float:
        cached_rate = self.input_per_1m if self.cached_input_per_1m is None else self.cached_input_per_1m
        fresh = max(0, input_tokens - cached_tokens)
        return (fresh * self.input_per_1m + cached_tokens * cached_rate + output_tokens * self.output_per_1m) / 1e6


@dataclass(frozen=True)
class Prices:
    by_model: dict[str, ModelPrice] = field(default_factory=dict)


def telemetry_config(config: GatewayConfig) -> TelemetryConfig | None:
    """The policy's `telemetry:` section; None: telemetry is off."""
    return cast("TelemetryConfig | None", config.sections.get(NAME))


def route_telemetry(route: RouteConfig) -> RouteTelemetry | None:
    return cast("RouteTelemetry | None", route.sections.get(NAME))


def pool_prices(pool: PoolConfig) -> Prices | None:
    return cast("Prices | None", pool.sections.get(NAME))


def parse_top_part(top: Section, frame: Frame) -> TelemetryConfig | None:
    return parse_telemetry(top.section("telemetry")) if top.has("telemetry") else None


def parse_route_part(route: Section, frame: Frame) -> RouteTelemetry | None:
    return parse_route_telemetry(route.section("telemetry")) if route.has("telemetry") else None


def parse_pool_part(pool: Section, frame: Frame) -> Prices | None:
    return parse_prices(pool.section("prices")) if pool.has("prices") else None


def parse_telemetry(sec: Section) -> TelemetryConfig:
    service = sec.str("service_name", None)
    endpoint = sec.url("otlp_endpoint", None)
    env_settings = settings_from_env(service or "edgegw")
    ratio = sec.float("sample_ratio", env_settings.sample_ratio if env_settings else 1.0, min=0.0, max=1.0)
    headers_env = sec.str("headers_env", None)
    headers: dict[str, str] = dict(env_settings.headers) if env_settings else {}
    if headers_env is not None:
        text = os.environ.get(headers_env)
        if text is None:
            raise sec.error("headers_env", f"environment variable {headers_env} is not set")
        headers = parse_headers(text)
    export = None
    url = traces_url(endpoint) if endpoint else env_settings.endpoint if env_settings else None
    if url is not None:
        export = ExportSettings(
            endpoint=url,
            service_name=service or (env_settings.service_name if env_settings else "edgegw"),
            sample_ratio=ratio,
            headers=headers,
            # 4x the SDK's defaults: a POST through its client costs ~0.9M instructions, ~9k per traced
            # request at 512-span batches (docs/benchmarks.md); the Collector's batches are 8192
            max_queue_spans=sec.int("max_queue_spans", 8192, min=1, max=1 << 20),
            max_batch_spans=sec.int("max_batch_spans", 2048, min=1, max=1 << 16),
            schedule_delay_ms=sec.int("schedule_delay_ms", 1000, min=1, max=60_000),
            timeout_s=sec.float("export_timeout_s", 5.0, min=0.01, max=60.0),
        )
    usage = _usage(sec.section("usage"))
    cfg = TelemetryConfig(export=export, trust_traceparent=sec.bool("trust_traceparent", True), usage=usage)
    sec.done()
    return cfg


def _usage(sec: Section) -> UsageConfig | None:
    if not sec.bool("enabled", True):
        sec.done()
        return None
    labels = tuple(sec.str_list("labels", list(USAGE_DIMENSIONS)))
    for label in labels:
        if label not in USAGE_DIMENSIONS and not (label.startswith("claim:") and len(label) > 6):
            raise sec.error("labels", f"unknown usage label {label!r} (choose from {', '.join(USAGE_DIMENSIONS)}, "
                                      "or claim:NAME for a JWT claim)")
    names = [label.partition(":")[2] if label.startswith("claim:") else label for label in labels]
    if len(set(names)) != len(names) or "type" in names:
        raise sec.error("labels", "each label needs its own name (a claim cannot be called like a dimension "
                                  "or `type`)")
    cfg = UsageConfig(labels=labels, max_series=sec.int("max_series", DEFAULT_MAX_SERIES, min=1, max=100_000),
                      retention_h=sec.int("retention_h", 24 * 35, min=1, max=24 * 400))
    sec.done()
    return cfg


def parse_route_telemetry(sec: Section) -> RouteTelemetry:
    cfg = RouteTelemetry(record_content=sec.bool("record_content", False))
    sec.done()
    return cfg


def parse_prices(sec: Section) -> Prices:
    out: dict[str, ModelPrice] = {}
    for model in list(sec.data):
        m = sec.section(str(model))
        out[str(model)] = ModelPrice(input_per_1m=m.float("input_per_1m", 0.0, min=0.0),
                                     output_per_1m=m.float("output_per_1m", 0.0, min=0.0),
                                     cached_input_per_1m=m.float("cached_input_per_1m", None, min=0.0))
        m.done()
    sec.done()
    return Prices(out)
