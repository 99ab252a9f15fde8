"""Per-plugin metrics of the host, on the shared registry (`edgecore.metrics`: the embedder exports it).

The per-request ones (calls, duration, fuel, and plugin-defined counters) are batched
(`edgecore.metrics.flush`): added up in plain Python numbers and moved into their Prometheus
children in one step, because updating a child costs a lock and several frames per value.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

# schedule and track are re-exported: wasm_plugins.services registers its batches through this module.
from edgecore.metrics import ChildCache, registry, schedule as schedule, track as track

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


class PhaseTally:
    """calls, duration and fuel of one (plugin, phase), counted per request in plain numbers.

    Only `add` (the event loop) writes the running totals and only `flush` (under its lock) writes
    what was already moved, so a flush from another thread loses nothing: it moves the difference."""

    __slots__ = ("calls", "hist", "fuel", "bounds", "n", "total", "counts", "used", "done_n", "done_total",
                 "done_counts", "done_used", "__weakref__")

    def __init__(self, plugin: str, phase: str) -> None:
        self.calls = calls_by.get(plugin, phase)
        self.hist = seconds_by.get(plugin)
        self.fuel = fuel_by.get(plugin)
        # Histogram.observe puts a value in the first bucket whose upper bound is >= it: bisect_left
        # over the same bounds (the last is +Inf) finds that bucket without a loop in Python. The
        # histogram's buckets are internals of prometheus_client: where they are not as expected,
        # durations go to observe() directly.
        hist = self.hist
        bounds: Any = getattr(hist, "_upper_bounds", None)
        buckets = getattr(hist, "_buckets", None)
        exact = bounds is not None and buckets is not None and len(bounds) == len(buckets) and hasattr(hist, "_sum")
        self.bounds = tuple(bounds) if exact else None
        self.n = self.done_n = 0
        self.total = self.done_total = 0.0
        self.used = self.done_used = 0
        self.counts = [0] * len(self.bounds or ())
        self.done_counts = [0] * len(self.bounds or ())
        track(self)

    def add(self, elapsed: float, fuel: int) -> None:
        if self.n == self.done_n:
            schedule()
        self.n += 1
        if fuel:
            self.used += fuel
        bounds = self.bounds
        if bounds is not None:
            self.total += elapsed
            self.counts[bisect_left(bounds, elapsed)] += 1
        else:
            self.hist.observe(elapsed)

    def flush(self) -> None:
        n, total, used = self.n, self.total, self.used
        if n != self.done_n:
            self.calls.inc(n - self.done_n)
            self.done_n = n
        if used != self.done_used:
            self.fuel.inc(used - self.done_used)
            self.done_used = used
        if total != self.done_total:
            self.hist._sum.inc(total - self.done_total)
            self.done_total = total
        counts, done, buckets = self.counts, self.done_counts, self.hist._buckets
        for i, c in enumerate(counts):
            if c != done[i]:
                buckets[i].inc(c - done[i])
                done[i] = c
