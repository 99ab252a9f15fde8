"""The status page's data: one JSON-ready dict describing a gateway worker right now.

Each feature adds its own sections (`Feature.status`: pools, plugins, rate limits, cache); the
gateway's own are here. Counters are read from the metrics registry by name (`metrics.samples`).
"""

from __future__ import annotations

import time
from typing import Any

from gateway.feature import GatewayView
from gateway.ingress.activity import activity
from gateway.metrics import rates, samples


def totals(now: float) -> dict[str, Any]:
    requests = errors = 0.0
    for _name, labels, value in samples("edgegw_requests_total"):
        requests += value
        if labels.get("status", "").startswith("5"):
            errors += value
    return {"requests": requests, "server_errors": errors,
            "requests_per_s": round(rates.rate("req", requests, now), 2),
            "server_errors_per_s": round(rates.rate("err", errors, now), 2)}


def snapshot(gateway: GatewayView) -> dict[str, Any]:
    """Everything the status page shows, for this worker process: each feature's sections, and the
    gateway's own (readiness, totals, activity, policy)."""
    now = time.time()
    out: dict[str, Any] = {"time": now, "ready": gateway.upstreams.ready()}
    for feature in gateway.features:
        if feature.status is not None:
            out.update(feature.status(gateway, now))
    out.update({"totals": totals(now), "series": activity.series(now), "errors": activity.recent_errors(),
                "policy": gateway.describe_policy()})
    return out
