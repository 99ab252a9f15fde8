"""Prometheus metrics of the gateway. Every subsystem registers on `registry`."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess

registry = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1)

requests_total = Counter("edgegw_requests_total", "Requests by route, pool and status",
                         ["route", "pool", "status"], registry=registry)
request_seconds = Histogram("edgegw_request_duration_seconds", "End-to-end request latency",
                            ["route"], buckets=_LATENCY_BUCKETS, registry=registry)
overhead_seconds = Histogram("edgegw_overhead_seconds", "Time spent in the gateway, upstream excluded",
                             ["route"], buckets=_OVERHEAD_BUCKETS, registry=registry)
upstream_seconds = Histogram("edgegw_upstream_duration_seconds", "Upstream latency by pool",
                             ["pool"], buckets=_LATENCY_BUCKETS, registry=registry)
in_flight = Gauge("edgegw_in_flight_requests", "Requests being processed", registry=registry,
                  multiprocess_mode="livesum")
endpoint_healthy = Gauge("edgegw_endpoint_healthy", "1 when the endpoint takes traffic",
                         ["pool", "endpoint"], registry=registry, multiprocess_mode="livemin")
endpoint_in_flight = Gauge("edgegw_endpoint_in_flight", "Requests outstanding on the endpoint",
                           ["pool", "endpoint"], registry=registry, multiprocess_mode="livesum")
retries_total = Counter("edgegw_upstream_retries_total", "Retries to another endpoint",
                        ["pool", "reason"], registry=registry)
ejections_total = Counter("edgegw_endpoint_ejections_total", "Outlier ejections",
                          ["pool", "endpoint"], registry=registry)
readmissions_total = Counter("edgegw_endpoint_readmissions_total", "Endpoints returned to service",
                             ["pool", "endpoint"], registry=registry)
upstream_errors_total = Counter("edgegw_upstream_errors_total", "Upstream failures by kind",
                                ["pool", "kind"], registry=registry)
auth_failures_total = Counter("edgegw_auth_failures_total", "Rejected credentials by reason",
                              ["reason"], registry=registry)


_before_scrape: list[Callable[[], None]] = []


def on_scrape(hook: Callable[[], None]) -> None:
    """Run `hook` before each scrape: for gauges cheaper to read on demand than to keep current."""
    _before_scrape.append(hook)


def render() -> bytes:
    """Prometheus text. With several workers (PROMETHEUS_MULTIPROC_DIR set), every worker's values."""
    for hook in _before_scrape:
        hook()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return generate_latest(merged)
    return generate_latest(registry)


class ChildCache:
    """Memoises `metric.labels(...)`: the label lookup costs more than the observation itself."""

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.children: dict[tuple[str, ...], Any] = {}

    def get(self, *labels: str) -> Any:
        child = self.children.get(labels)
        if child is None:
            child = self.children[labels] = self.metric.labels(*labels)
        return child


requests_by = ChildCache(requests_total)
request_seconds_by = ChildCache(request_seconds)
overhead_seconds_by = ChildCache(overhead_seconds)
upstream_seconds_by = ChildCache(upstream_seconds)
