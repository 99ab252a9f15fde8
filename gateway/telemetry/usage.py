"""Per-partner usage: requests and input, output and cached tokens by the policy's usage labels
(issuer, subject or a claim such as tenant, model, route).

Counted twice from one place: Prometheus counters (`edgegw_usage_*_total`, for dashboards) and hourly
buckets (for `GET /admin/usage?since=...`), which `gateway.telemetry.usage_store` keeps in Redis (every
replica) or in files beside the worker metrics (this replica).

Cardinality is bounded: a worker keeps at most `max_series` distinct label sets; a request whose
label set would be one more is counted with its partner labels (everything but model and route,
which the policy bounds) as `other`, and `edgegw_usage_overflow_total` counts it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.telemetry.config import UsageConfig
from gateway.telemetry.metrics import usage_counters, usage_overflow_total

if TYPE_CHECKING:
    from gateway.context import RequestContext

OTHER = "other"
_BOUNDED = ("model", "route")  # set by the policy: never folded into `other`
_MAX_VALUE = 128  # characters of a label value (a claim could be anything)

Key = tuple[str, ...]
COUNTS = ("requests", "input_tokens", "output_tokens", "cached_tokens")


def label_name(dimension: str) -> str:
    """The Prometheus label (and report column) of a usage dimension: `claim:tenant` -> `tenant`."""
    return dimension.partition(":")[2] if dimension.startswith("claim:") else dimension


def hour_of(t: float) -> int:
    return int(t // 3600)


@dataclass(slots=True)
class _Series:
    requests: object
    input_tokens: object
    output_tokens: object
    cached_tokens: object


class UsageRecorder:
    """One worker's usage counts (the event loop's only)."""

    def __init__(self, config: UsageConfig) -> None:
        self.config = config
        self.dimensions = config.labels
        self.names = tuple(label_name(d) for d in config.labels)
        self._requests, self._tokens = usage_counters(self.names)
        self._series: dict[Key, _Series] = {}
        self._bounded = [i for i, d in enumerate(self.dimensions) if d in _BOUNDED]
        # hour -> label set -> [requests, input, output, cached]; moved out by `take` (the store's flush)
        self.pending: dict[int, dict[Key, list[int]]] = {}

    def key(self, ctx: RequestContext) -> Key:
        values = []
        for dim in self.dimensions:
            if dim == "issuer":
                value = ctx.issuer
            elif dim == "subject":
                value = ctx.subject
            elif dim == "model":
                value = ctx.model if ctx.pool is not None else None
            elif dim == "route":
                value = ctx.route.name if ctx.route is not None else None
            else:
                claim = ctx.claims.get(dim[6:]) if ctx.claims else None
                value = claim if isinstance(claim, str) else None if claim is None else str(claim)
            values.append((value or "none")[:_MAX_VALUE])
        return tuple(values)

    def record(self, ctx: RequestContext) -> None:
        key = self.key(ctx)
        series = self._series.get(key)
        if series is None:
            if len(self._series) >= self.config.max_series:
                usage_overflow_total.inc()
                key = tuple(v if i in self._bounded else OTHER for i, v in enumerate(key))
                series = self._series.get(key)
            if series is None:
                series = self._new_series(key)
        usage = ctx.usage
        inp = usage.prompt_tokens if usage is not None else 0
        out = usage.completion_tokens if usage is not None else 0
        cached = usage.cached_tokens if usage is not None else 0
        series.requests.inc()  # type: ignore[attr-defined]
        if inp:
            series.input_tokens.inc(inp)  # type: ignore[attr-defined]
        if out:
            series.output_tokens.inc(out)  # type: ignore[attr-defined]
        if cached:
            series.cached_tokens.inc(cached)  # type: ignore[attr-defined]
        bucket = self.pending.setdefault(hour_of(time.time()), {})
        counts = bucket.get(key)
        if counts is None:
            counts = bucket[key] = [0, 0, 0, 0]
        counts[0] += 1
        counts[1] += inp
        counts[2] += out
        counts[3] += cached

    def _new_series(self, key: Key) -> _Series:
        series = _Series(self._requests.labels(*key), self._tokens.labels(*key, "input"),
                         self._tokens.labels(*key, "output"), self._tokens.labels(*key, "cached"))
        self._series[key] = series
        return series

    def take(self) -> dict[int, dict[Key, list[int]]]:
        """The counts since the last call (for the store)."""
        pending, self.pending = self.pending, {}
        return pending
