"""The plugins' part of the status page and `/admin/status.json`: versions, canaries, call rates."""

from __future__ import annotations

from collections import defaultdict

from gateway.feature import GatewayView
from gateway.metrics import rates, samples
from gateway.plugins.embedder import MANAGER


def plugins_status(gateway: GatewayView, now: float) -> dict[str, object]:
    manager = gateway.state(MANAGER)
    if manager is None:
        return {"plugins": []}
    try:
        described = manager.describe()
    except Exception:  # a failure here must not take the page down
        return {"plugins": [{"name": "?", "error": "plugin manager could not describe its plugins"}]}
    calls: dict[str, float] = defaultdict(float)
    failures: dict[str, float] = defaultdict(float)
    for name, labels, value in samples("edgegw_plugin_"):
        if name == "edgegw_plugin_calls_total":
            calls[labels.get("plugin", "")] += value
        elif name == "edgegw_plugin_failures_total":
            failures[labels.get("plugin", "")] += value
    out = []
    for p in described:
        name = str(p.get("name", "?"))
        stable, canary = p.get("stable") or {}, p.get("canary") or {}
        canary_row = {k: canary.get(k) for k in ("version", "weight", "requests", "failures")} if canary else None
        out.append({
            "name": name, "failure_policy": p.get("failure_policy"),
            "version": stable.get("version"), "instance": stable.get("instance"),
            "canary": canary_row,
            "calls": calls[name], "failures": failures[name],
            "calls_per_s": round(rates.rate(f"plugin-calls:{name}", calls[name], now), 2),
            "failures_per_s": round(rates.rate(f"plugin-failures:{name}", failures[name], now), 2),
            "last_event": (p.get("events") or [None])[-1],
        })
    return {"plugins": out}
