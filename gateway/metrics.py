"""Prometheus metrics of the gateway, on the shared registry (`edgecore.metrics`, where the
batching is described)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Re-exported: the gateway's modules import the shared metrics machinery from here.
from edgecore.metrics import (
    FLUSH_S as FLUSH_S,
    BatchedCounter as BatchedCounter,
    ChildCache as ChildCache,
    flush as flush,
    on_scrape as on_scrape,
    register_shared as register_shared,
    registry as registry,
    render as render,
    schedule as schedule,
    track as track,
)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1)

requests_total = Counter("edgegw_requests_total", "Requests by route, pool and status",
                         ["route", "pool", "status"], registry=registry)
request_seconds = Histogram("edgegw_request_duration_seconds", "End-to-end request latency",
                            ["route"], buckets=_LATENCY_BUCKETS, registry=registry)
overhead_seconds = Histogram("edgegw_overhead_seconds", "Time spent in the gateway, upstream excluded "
                             "(streams: before the first upstream byte plus per-chunk work)",
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
routing_decisions_total = Counter("edgegw_routing_decisions_total", "`balancer: inference` choices by reason: "
                                  "affinity (cached prefix), session (new session's hashed home), load "
                                  "(the load guard overrode affinity), fallback (no prompt to route on)",
                                  ["pool", "reason"], registry=registry)
auth_failures_total = Counter("edgegw_auth_failures_total", "Rejected credentials by reason",
                              ["reason"], registry=registry)


requests_by = ChildCache(requests_total)
request_seconds_by = ChildCache(request_seconds)
overhead_seconds_by = ChildCache(overhead_seconds)
upstream_seconds_by = ChildCache(upstream_seconds)


class Rates:
    """Per-second rates of cumulative counters, from the difference between two snapshots."""

    MIN_INTERVAL_S = 1.0

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, float]] = {}
        self._rates: dict[str, float] = {}

    def rate(self, key: str, value: float, now: float) -> float:
        prev = self._last.get(key)
        if prev is None:
            self._last[key] = (now, value)
            return 0.0
        if now - prev[0] >= self.MIN_INTERVAL_S:  # several viewers must not shrink the interval to noise
            self._rates[key] = max(0.0, value - prev[1]) / (now - prev[0])
            self._last[key] = (now, value)
        return self._rates.get(key, 0.0)


rates = Rates()  # the status page's, shared by every feature's section


def samples(prefix: str) -> list[tuple[str, dict[str, str], float]]:
    """Every (name, labels, value) on the gateway's registry whose name starts with `prefix`."""
    found = []
    for family in registry.collect():
        # A counter's family is named without `_total`, its samples with it: match on samples.
        for s in family.samples:
            if s.name.startswith(prefix) and not s.name.endswith("_created"):
                found.append((s.name, s.labels, s.value))
    return found
