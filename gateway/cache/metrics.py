"""Metrics of the response cache."""

from __future__ import annotations

from prometheus_client import Counter

from gateway.metrics import ChildCache, registry

cache_requests_total = Counter("edgegw_cache_requests_total", "Cacheable-route requests by cache outcome",
                               ["route", "status"], registry=registry)
cache_requests_by = ChildCache(cache_requests_total, batched=True)  # one per request
