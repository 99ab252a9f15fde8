"""Config for rate limits, per route (`routes[].rate_limits`), validated at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from gateway.config.part import Frame
from gateway.config.reader import Section
from gateway.config.schema import RouteConfig

KEY_PARTS = ("subject", "tenant", "api_key", "client_ip", "route", "model")
ON_REDIS_ERROR = ("allow", "deny", "local")
HEADER_STYLES = ("draft", "ietf", "none")

# config key -> (kind, window in seconds); kind is requests | tokens | concurrent
QUOTA_KEYS: dict[str, tuple[str, float]] = {
    "requests_per_second": ("requests", 1.0),
    "requests_per_minute": ("requests", 60.0),
    "requests_per_hour": ("requests", 3600.0),
    "requests_per_day": ("requests", 86400.0),
    "tokens_per_minute": ("tokens", 60.0),
    "tokens_per_day": ("tokens", 86400.0),
    "concurrent": ("concurrent", 0.0),
}
# A sliding window is counted in this many buckets: memory and script work stay small, and a
# request is forgotten at most one bucket (1/20 of the window) late, never early.
BUCKETS_PER_WINDOW = 20


@dataclass(frozen=True, slots=True)
class Quota:
    """One number to enforce, e.g. 50 requests per minute."""

    label: str  # the config key, e.g. "requests_per_minute"; part of the Redis key
    kind: str  # requests | tokens | concurrent
    limit: int
    window_ms: int  # 0 for concurrent
    width_ms: int  # bucket width; 0 for concurrent


@dataclass(frozen=True)
class LimitConfig:
    """One entry of a route's `rate_limits` list."""

    name: str
    key: tuple[str, ...]
    quotas: tuple[Quota, ...]  # for callers whose tier has no override
    tiers: dict[str, tuple[Quota, ...]] = field(default_factory=dict)
    on_redis_error: str = "local"
    token_estimate: int = 256  # output tokens reserved when the request names no max_tokens
    lease_s: float = 30.0  # a concurrency slot held by a dead gateway frees itself after this
    headers: str = "draft"

    def quotas_for(self, tier: str | None) -> tuple[Quota, ...]:
        if tier is not None:
            found = self.tiers.get(tier)
            if found is not None:
                return found
        return self.quotas


NAME = "ratelimit"


def route_limits(route: RouteConfig) -> tuple[LimitConfig, ...]:
    """A route's limits (empty: none)."""
    return cast("tuple[LimitConfig, ...]", route.sections.get(NAME, ()))


def parse_route_part(route: Section, frame: Frame) -> tuple[LimitConfig, ...] | None:
    """`routes[].rate_limits`; None when the route has none."""
    return tuple(parse_route_limits(route.sections("rate_limits"))) or None


def parse_route_limits(secs: list[Section]) -> list[LimitConfig]:
    """A route's `rate_limits` list; names are unique within the route."""
    limits = [_limit(sec, i) for i, sec in enumerate(secs)]
    seen: set[str] = set()
    for sec, limit in zip(secs, limits, strict=True):
        if limit.name in seen:
            raise sec.error("name", f"duplicate limit name {limit.name!r}")
        seen.add(limit.name)
    return limits


def _limit(sec: Section, index: int) -> LimitConfig:
    name = sec.str("name", f"limit{index}")
    if not name or any(c in name for c in "{}: "):
        raise sec.error("name", "must be non-empty without braces, colons or spaces")
    key = tuple(sec.str_list("key", ["subject"]))
    if not key:
        raise sec.error("key", "at least one key part is required")
    for part in key:
        if part not in KEY_PARTS:
            raise sec.error("key", f"unknown key part {part!r} (allowed: {', '.join(KEY_PARTS)})")
    base = _quotas(sec)
    tiers: dict[str, tuple[Quota, ...]] = {}
    tiers_sec = sec.section("tiers")
    for tier in list(tiers_sec.data):
        tier_sec = tiers_sec.section(str(tier), required=True)
        merged = {q.label: q for q in base}
        for label, quota in _quota_overrides(tier_sec).items():
            if quota is None:
                merged.pop(label, None)
            else:
                merged[label] = quota
        tier_sec.done()
        tiers[str(tier)] = tuple(merged.values())
    tiers_sec.done()
    if not base and not any(tiers.values()):
        raise sec.error("requests_per_minute", "a limit needs at least one of " + ", ".join(QUOTA_KEYS))
    cfg = LimitConfig(
        name=name,
        key=key,
        quotas=base,
        tiers=tiers,
        on_redis_error=sec.str("on_redis_error", "local", choices=ON_REDIS_ERROR),
        token_estimate=sec.int("token_estimate", 256, min=0),
        lease_s=sec.float("lease_s", 30.0, min=1.0, max=86400.0),
        headers=sec.str("headers", "draft", choices=HEADER_STYLES),
    )
    sec.done()
    return cfg


def _quotas(sec: Section) -> tuple[Quota, ...]:
    found = _quota_overrides(sec)
    for label, quota in found.items():
        if quota is None:
            raise sec.error(label, "'unlimited' is only meaningful inside tiers")
    return tuple(q for q in found.values() if q is not None)


def _quota_overrides(sec: Section) -> dict[str, Quota | None]:
    """The quota keys present in a section; `unlimited` maps to None (a tier lifting a limit)."""
    out: dict[str, Quota | None] = {}
    for label, (kind, window_s) in QUOTA_KEYS.items():
        if not sec.has(label):
            continue
        if sec.data[label] == "unlimited":
            sec.raw(label)
            out[label] = None
            continue
        limit = sec.int(label, min=1 if kind == "concurrent" else 0)
        window_ms = int(window_s * 1000)
        out[label] = Quota(label, kind, limit, window_ms, window_ms // BUCKETS_PER_WINDOW)
    return out
