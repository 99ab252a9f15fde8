"""Metrics of the rate limiter, the response cache and their Redis link."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from gateway.metrics import ChildCache, registry

rejections_total = Counter("edgegw_ratelimit_rejections_total", "Requests refused by a rate limit",
                           ["route", "limit"], registry=registry)
fallbacks_total = Counter("edgegw_ratelimit_fallbacks_total",
                          "Limit decisions taken without Redis, by on_redis_error mode",
                          ["mode"], registry=registry)
redis_errors_total = Counter("edgegw_redis_errors_total", "Failed or timed-out Redis calls", ["op"],
                             registry=registry)
redis_degraded = Gauge("edgegw_redis_degraded", "1 while Redis is unreachable and fallbacks apply",
                       registry=registry, multiprocess_mode="livemax")
cache_requests_total = Counter("edgegw_cache_requests_total", "Cacheable-route requests by cache outcome",
                               ["route", "status"], registry=registry)

rejections_by = ChildCache(rejections_total)
cache_requests_by = ChildCache(cache_requests_total, batched=True)  # one per request
