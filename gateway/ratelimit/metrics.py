"""Metrics of the rate limiter (the Redis link's are in `gateway/redis/metrics.py`)."""

from __future__ import annotations

from prometheus_client import Counter

from gateway.metrics import ChildCache, registry

rejections_total = Counter("edgegw_ratelimit_rejections_total", "Requests refused by a rate limit",
                           ["route", "limit"], registry=registry)
fallbacks_total = Counter("edgegw_ratelimit_fallbacks_total",
                          "Limit decisions taken without Redis, by on_redis_error mode",
                          ["mode"], registry=registry)

rejections_by = ChildCache(rejections_total)
