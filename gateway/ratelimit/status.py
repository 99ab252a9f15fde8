"""The rate limiter's part of the status page and `/admin/status.json`, from its metrics."""

from __future__ import annotations

from collections import defaultdict

from gateway.feature import GatewayView
from gateway.metrics import rates, samples


def ratelimit_status(gateway: GatewayView, now: float) -> dict[str, object]:
    by_limit: dict[str, float] = defaultdict(float)
    total = fallbacks = 0.0
    for name, labels, value in samples("edgegw_ratelimit"):
        if name.startswith("edgegw_ratelimit_rejections"):
            total += value
            by_limit[f"{labels.get('route', '?')}/{labels.get('limit', '?')}"] += value
        elif name.startswith("edgegw_ratelimit_fallbacks"):
            fallbacks += value
    degraded = [v for n, _, v in samples("edgegw_redis_degraded")]
    return {"ratelimit": {"rejections": total, "rejections_per_s": round(rates.rate("rl", total, now), 2),
                          "by_limit": dict(sorted(by_limit.items(), key=lambda kv: -kv[1])[:8]),
                          "fallbacks": fallbacks, "redis_degraded": bool(degraded and max(degraded) > 0)}}
