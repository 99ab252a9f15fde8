"""The top-level `redis:` section: the store the rate limiter and the cache share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

from gateway.config.part import Frame
from gateway.config.reader import Section
from gateway.config.schema import GatewayConfig

NAME = "redis"


@dataclass(frozen=True)
class RedisConfig:
    """The top-level `redis:` section. Absent: limits and the cache run in memory (one process)."""

    url: str
    timeout_ms: int = 50
    key_prefix: str = "edgegw"
    cluster: bool = False
    max_connections: int = 128
    retry_interval_s: float = 0.5  # while degraded, how often a request may probe Redis again


def redis_config(config: GatewayConfig) -> RedisConfig | None:
    """The policy's `redis:` section; None: limits and the cache run in process memory."""
    return cast("RedisConfig | None", config.sections.get(NAME))


def parse_top_part(top: Section, frame: Frame) -> RedisConfig | None:
    return parse_redis(top.section("redis"))


def parse_redis(sec: Section) -> RedisConfig | None:
    """`redis: {url, timeout_ms, key_prefix, cluster, max_connections, retry_interval_s}`."""
    if not sec.data:
        return None
    url = sec.str("url")
    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise sec.error("url", f"expected redis://, rediss:// or unix:// URL, got {_redact(url)!r}")
    prefix = sec.str("key_prefix", "edgegw")
    if not prefix or any(c in prefix for c in "{} "):
        raise sec.error("key_prefix", "must be non-empty without braces or spaces (braces are hash tags)")
    cfg = RedisConfig(
        url=url,
        timeout_ms=sec.int("timeout_ms", 50, min=1, max=10_000),
        key_prefix=prefix,
        cluster=sec.bool("cluster", False),
        max_connections=sec.int("max_connections", 128, min=1, max=10_000),
        retry_interval_s=sec.float("retry_interval_s", 0.5, min=0.01, max=60.0),
    )
    if cfg.cluster and urlsplit(url).scheme == "unix":
        raise sec.error("cluster", "a Redis Cluster is reached over TCP, not a unix socket")
    sec.done()
    return cfg


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(parts.password, "***")
    return url
