"""The status page's data: one JSON-ready dict describing a gateway worker right now.

Every subsystem is read defensively (getattr, metric names by prefix): the page must keep working
while the plugin manager, rate limiter and cache evolve, and show what exists.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

from gateway import metrics
from gateway.policy.rollouts import rollouts
from gateway.status.activity import activity


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


_rates = Rates()


def samples(prefix: str) -> list[tuple[str, dict[str, str], float]]:
    """Every (name, labels, value) on the gateway's registry whose name starts with `prefix`."""
    found = []
    for family in metrics.registry.collect():
        # A counter's family is named without `_total`, its samples with it: match on samples.
        for s in family.samples:
            if s.name.startswith(prefix) and not s.name.endswith("_created"):
                found.append((s.name, s.labels, s.value))
    return found


def _endpoint_state(e: Any) -> str:
    if getattr(e, "draining", False):
        return "draining"
    if e.ejected:
        return "ejected"
    return "healthy" if e.healthy else "unhealthy"


def pools(gateway: Any) -> list[dict[str, Any]]:
    out = []
    for pool in gateway.upstreams.pools.values():
        dns = pool.config.dns
        out.append({
            "name": pool.name, "models": sorted(pool.models), "balancer": pool.config.balancer,
            "dns": {"name": dns.name, "port": dns.port, "interval_s": dns.interval_s} if dns else None,
            "endpoints": [{**e.describe(), "state": _endpoint_state(e)} for e in pool.endpoints],
        })
    return out


def plugins(gateway: Any, now: float) -> list[dict[str, Any]]:
    manager = getattr(gateway, "plugins", None)
    describe = getattr(manager, "describe", None)
    if describe is None:
        return []
    try:
        described = describe()
    except Exception:  # the plugin API is young; a failure here must not take the page down
        return [{"name": "?", "error": "plugin manager could not describe its plugins"}]
    calls: dict[str, float] = defaultdict(float)
    failures: dict[str, float] = defaultdict(float)
    for name, labels, value in samples("edgegw_plugin_"):
        if name == "edgegw_plugin_calls_total":
            calls[labels.get("plugin", "")] += value
        elif name == "edgegw_plugin_failures_total":
            failures[labels.get("plugin", "")] += value
    out = []
    for p in described if isinstance(described, list) else []:
        name = str(p.get("name", "?"))
        stable, canary = p.get("stable") or {}, p.get("canary") or {}
        canary_row = {k: canary.get(k) for k in ("version", "weight", "requests", "failures")} if canary else None
        out.append({
            "name": name, "failure_policy": p.get("failure_policy"),
            "version": stable.get("version"), "instance": stable.get("instance"),
            "canary": canary_row,
            "calls": calls[name], "failures": failures[name],
            "calls_per_s": round(_rates.rate(f"plugin-calls:{name}", calls[name], now), 2),
            "failures_per_s": round(_rates.rate(f"plugin-failures:{name}", failures[name], now), 2),
            "last_event": (p.get("events") or [None])[-1],
        })
    return out


def ratelimit(now: float) -> dict[str, Any]:
    by_limit: dict[str, float] = defaultdict(float)
    total = fallbacks = 0.0
    for name, labels, value in samples("edgegw_ratelimit"):
        if name.startswith("edgegw_ratelimit_rejections"):
            total += value
            by_limit[f"{labels.get('route', '?')}/{labels.get('limit', '?')}"] += value
        elif name.startswith("edgegw_ratelimit_fallbacks"):
            fallbacks += value
    degraded = [v for n, _, v in samples("edgegw_redis_degraded")]
    return {"rejections": total, "rejections_per_s": round(_rates.rate("rl", total, now), 2),
            "by_limit": dict(sorted(by_limit.items(), key=lambda kv: -kv[1])[:8]),
            "fallbacks": fallbacks, "redis_degraded": bool(degraded and max(degraded) > 0)}


def cache() -> dict[str, Any]:
    counts: dict[str, float] = defaultdict(float)
    for name, labels, value in samples("edgegw_cache"):
        if name.startswith("edgegw_cache_requests"):
            counts[labels.get("status", "?").upper()] += value
    lookups = counts["HIT"] + counts["MISS"]
    return {"hits": counts["HIT"], "misses": counts["MISS"], "bypass": counts["BYPASS"],
            "hit_ratio": round(counts["HIT"] / lookups, 4) if lookups else None}


def totals(now: float) -> dict[str, Any]:
    requests = errors = 0.0
    for _name, labels, value in samples("edgegw_requests_total"):
        requests += value
        if labels.get("status", "").startswith("5"):
            errors += value
    return {"requests": requests, "server_errors": errors,
            "requests_per_s": round(_rates.rate("req", requests, now), 2),
            "server_errors_per_s": round(_rates.rate("err", errors, now), 2)}


def snapshot(gateway: Any) -> dict[str, Any]:
    """Everything the status page shows, for this worker process."""
    now = time.time()
    return {"time": now, "ready": gateway.upstreams.ready(), "pools": pools(gateway),
            "plugins": plugins(gateway, now), "ratelimit": ratelimit(now), "cache": cache(),
            "totals": totals(now), "series": activity.series(now), "errors": activity.recent_errors(),
            "policy": {**gateway.policy.describe(), "canary": gateway.canary.describe()}, "rollouts": rollouts(gateway)}
