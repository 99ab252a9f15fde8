"""Config for response caching: per route (`routes[].cache`) and the in-process store (`memory_cache:`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from gateway.config.part import Frame
from gateway.config.reader import Section
from gateway.config.schema import GatewayConfig, RouteConfig

NAME = "cache"

WHEN = ("deterministic", "always", "header")
EVICTION = ("lru", "fifo")


@dataclass(frozen=True)
class CacheRule:
    ttl_s: float = 300.0
    # deterministic: temperature 0 (and embeddings), or the request opts in with `x-edgegw-cache: on`;
    # header: only requests that opt in; always: every request (the policy opts in).
    when: str = "deterministic"
    max_bytes: int = 1 << 20  # larger responses are not stored
    lock_s: float = 30.0  # single-flight lock lease: how long the first miss may take before others go
    wait_s: float = 5.0  # how long identical misses wait for the first one, then go to the backend


def parse_cache_rule(sec: Section) -> CacheRule:
    rule = CacheRule(
        ttl_s=sec.float("ttl_s", 300.0, min=1.0, max=30 * 86400.0),
        when=sec.str("when", "deterministic", choices=WHEN),
        max_bytes=sec.int("max_bytes", 1 << 20, min=256, max=64 << 20),
        lock_s=sec.float("lock_s", 30.0, min=0.1, max=3600.0),
        wait_s=sec.float("wait_s", 5.0, min=0.0, max=600.0),
    )
    if rule.wait_s > rule.lock_s:
        raise sec.error("wait_s", f"must not exceed lock_s ({rule.lock_s})")
    sec.done()
    return rule


@dataclass(frozen=True)
class MemoryCacheConfig:
    """The in-process cache store (used when the policy has no `redis:`): `memory_cache:`."""

    max_bytes: int = 64 << 20  # entries (compressed) beyond this evict others
    max_entries: int = 100_000
    eviction: str = "lru"  # lru: the least recently read goes first; fifo: the oldest stored (hits are cheaper)


def parse_memory_cache(sec: Section) -> MemoryCacheConfig:
    cfg = MemoryCacheConfig(
        max_bytes=sec.int("max_bytes", 64 << 20, min=1 << 16, max=1 << 40),
        max_entries=sec.int("max_entries", 100_000, min=1, max=100_000_000),
        eviction=sec.str("eviction", "lru", choices=EVICTION),
    )
    sec.done()
    return cfg


def route_rule(route: RouteConfig) -> CacheRule | None:
    """A route's `cache:` rule; None: the route does not cache."""
    return cast("CacheRule | None", route.sections.get(NAME))


def memory_cache(config: GatewayConfig) -> MemoryCacheConfig | None:
    """The policy's `memory_cache:` section; None: its defaults."""
    return cast("MemoryCacheConfig | None", config.sections.get(NAME))


def parse_top_part(top: Section, frame: Frame) -> MemoryCacheConfig | None:
    return parse_memory_cache(top.section("memory_cache")) if top.has("memory_cache") else None


def parse_route_part(route: Section, frame: Frame) -> CacheRule | None:
    return parse_cache_rule(route.section("cache")) if route.has("cache") else None
