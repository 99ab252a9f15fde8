"""Prometheus metrics of policy versions (registered on the gateway's registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from gateway.metrics import registry

policy_info = Gauge("edgegw_policy_info", "1 for the policy version a worker serves (hash and load time)",
                    ["version", "loaded_at"], registry=registry, multiprocess_mode="liveall")
policy_reloads_total = Counter("edgegw_policy_reloads_total", "Policy loads by origin and result",
                               ["origin", "result"], registry=registry)
policy_reload_seconds = Gauge("edgegw_policy_reload_seconds", "How long the last policy swap took",
                              registry=registry, multiprocess_mode="livemax")
