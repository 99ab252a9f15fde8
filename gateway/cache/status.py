"""The cache's part of the status page and `/admin/status.json`, from its metrics."""

from __future__ import annotations

from collections import defaultdict

from gateway.feature import GatewayView
from gateway.metrics import samples


def cache_status(gateway: GatewayView, now: float) -> dict[str, object]:
    counts: dict[str, float] = defaultdict(float)
    for name, labels, value in samples("edgegw_cache"):
        if name.startswith("edgegw_cache_requests"):
            counts[labels.get("status", "?").upper()] += value
    lookups = counts["HIT"] + counts["MISS"]
    return {"cache": {"hits": counts["HIT"], "misses": counts["MISS"], "bypass": counts["BYPASS"],
                      "hit_ratio": round(counts["HIT"] / lookups, 4) if lookups else None}}
