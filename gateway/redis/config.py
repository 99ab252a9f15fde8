"""The `redis:` section, as the link uses it (parsed by `gateway/ratelimit/config.py`, `parse_redis`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RedisConfig:
    """The top-level `redis:` section. Absent: limits and the cache run in memory (one process)."""

    url: str
    timeout_ms: int = 50
    key_prefix: str = "edgegw"
    cluster: bool = False
    max_connections: int = 128
    retry_interval_s: float = 0.5  # while degraded, how often a request may probe Redis again
