"""Per-plugin metrics of the host, on the gateway's registry (exported on /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from gateway.metrics import ChildCache, registry

_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0)

calls_total = Counter("edgegw_plugin_calls_total", "Plugin invocations (one per plugin per request phase)",
                      ["plugin", "phase"], registry=registry)
failures_total = Counter("edgegw_plugin_failures_total", "Plugin failures by reason (trap, timeout, fuel, "
                         "memory, bad_pointer, bad_map, ...)", ["plugin", "reason"], registry=registry)
seconds = Histogram("edgegw_plugin_duration_seconds", "Time spent running a plugin for one request phase",
                    ["plugin"], buckets=_BUCKETS, registry=registry)
fuel_total = Counter("edgegw_plugin_fuel_used_total", "Wasm fuel (roughly instructions) plugins used",
                     ["plugin"], registry=registry)
skipped_total = Counter("edgegw_plugin_skipped_total", "Requests where a fail_open plugin was skipped",
                        ["plugin"], registry=registry)
instances_total = Counter("edgegw_plugin_instances_started_total", "Plugin instances created (first and "
                          "replacements after failures)", ["plugin"], registry=registry)
loads_total = Counter("edgegw_plugin_loads_total", "Plugin version loads by source and result",
                      ["plugin", "source", "result"], registry=registry)
rollbacks_total = Counter("edgegw_plugin_rollbacks_total", "Rollbacks (manual or failing canary)",
                          ["plugin", "reason"], registry=registry)
active_version = Gauge("edgegw_plugin_active_version", "Version number serving traffic (0: none)",
                       ["plugin", "role"], registry=registry)

calls_by = ChildCache(calls_total)
failures_by = ChildCache(failures_total)
seconds_by = ChildCache(seconds)
fuel_by = ChildCache(fuel_total)
