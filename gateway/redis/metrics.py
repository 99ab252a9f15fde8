"""Metrics of the Redis link."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from gateway.metrics import registry

redis_errors_total = Counter("edgegw_redis_errors_total", "Failed or timed-out Redis calls", ["op"],
                             registry=registry)
redis_degraded = Gauge("edgegw_redis_degraded", "1 while Redis is unreachable and fallbacks apply",
                       registry=registry, multiprocess_mode="livemax")
