"""The pools' part of the status page and `/admin/status.json`: endpoints with their state, rollouts."""

from __future__ import annotations

from gateway.feature import GatewayView
from gateway.upstream.admin import rollouts
from gateway.upstream.config import pool_options
from gateway.upstream.pool import Endpoint


def _endpoint_state(e: Endpoint) -> str:
    if getattr(e, "draining", False):
        return "draining"
    if e.ejected:
        return "ejected"
    return "healthy" if e.healthy else "unhealthy"


def pools(gateway: GatewayView) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for pool in gateway.upstreams.pools.values():
        dns = pool_options(pool.config).dns
        out.append({
            "name": pool.name, "models": sorted(pool.models), "balancer": pool.config.balancer,
            "dns": {"name": dns.name, "port": dns.port, "interval_s": dns.interval_s} if dns else None,
            "endpoints": [{**e.describe(), "state": _endpoint_state(e)} for e in pool.endpoints],
        })
    return out


def upstream_status(gateway: GatewayView, now: float) -> dict[str, object]:
    return {"pools": pools(gateway), "rollouts": rollouts(gateway)}
