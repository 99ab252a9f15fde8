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
from typing import TYPE_CHECKING, Any

from edgecore.metrics import schedule, track
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


class _Series:
    """One label set: cumulative counts (the event loop's), moved into its Prometheus children by
    `flush` (batched, `edgecore.metrics`) and into the hourly buckets by `UsageRecorder.take`, each from
    its own snapshot."""

    __slots__ = ("key", "children", "requests", "input_tokens", "output_tokens", "cached_tokens", "flushed",
                 "taken", "__weakref__")

    def __init__(self, key: Key, children: tuple[Any, Any, Any, Any]) -> None:
        self.key = key
        self.children = children
        self.requests = self.input_tokens = self.output_tokens = self.cached_tokens = 0
        self.flushed = [0, 0, 0, 0]  # written by `flush` only (any thread, under the metrics lock)
        self.taken = [0, 0, 0, 0]  # by `take` only (the event loop)
        track(self)

    def counts(self) -> tuple[int, int, int, int]:
        return self.requests, self.input_tokens, self.output_tokens, self.cached_tokens

    def flush(self) -> None:
        for i, n in enumerate(self.counts()):
            if n != self.flushed[i]:
                self.children[i].inc(n - self.flushed[i])
                self.flushed[i] = n


class UsageRecorder:
    """One worker's usage counts (the event loop's only)."""

    def __init__(self, config: UsageConfig) -> None:
        self.config = config
        self.dimensions = config.labels
        self.names = tuple(label_name(d) for d in config.labels)
        self._requests, self._tokens = usage_counters(self.names)
        self._series: dict[Key, _Series] = {}
        self._bounded = [i for i, d in enumerate(self.dimensions) if d in _BOUNDED]
        self._claims = tuple(d[6:] for d in self.dimensions if d.startswith("claim:"))
        # What a request's raw identity fields resolved to: (its series, whether that was an overflow).
        # Bounded: emptied when it holds 4x the series cap (a flood of subjects past the cap).
        self._resolved: dict[tuple[Any, ...], tuple[_Series, bool]] = {}
        # hour -> label set -> [requests, input, output, cached]: counts taken from the series at the
        # end of an hour, or handed back by a store that could not write them; emptied by `take`
        self.pending: dict[int, dict[Key, list[int]]] = {}
        self._hour = hour_of(time.time())
        self._hour_end = (self._hour + 1) * 3600

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
        """Count one request (its route is set) against its label set."""
        now = time.time()
        if now >= self._hour_end:
            self._end_hour(now)
        raw: tuple[Any, ...] = (ctx.issuer, ctx.subject, ctx.model if ctx.pool is not None else None,
                                ctx.route.name if ctx.route is not None else None)
        if self._claims:
            claims = ctx.claims or {}
            raw += tuple(claims.get(c) for c in self._claims)
        try:
            series, overflow = self._resolved.get(raw) or self._resolve(ctx, raw)
        except TypeError:  # an unhashable claim value: resolved each time
            series, overflow = self._series_of(self.key(ctx))
        if overflow:
            usage_overflow_total.inc()
        usage = ctx.usage
        series.requests += 1
        if usage is not None:
            series.input_tokens += usage.prompt_tokens
            series.output_tokens += usage.completion_tokens
            series.cached_tokens += usage.cached_tokens
        if series.requests - 1 == series.flushed[0]:  # the first count since the last flush
            schedule()

    def _resolve(self, ctx: RequestContext, raw: tuple[Any, ...]) -> tuple[_Series, bool]:
        if len(self._resolved) >= 4 * self.config.max_series:
            self._resolved.clear()
        found = self._resolved[raw] = self._series_of(self.key(ctx))
        return found

    def _series_of(self, key: Key) -> tuple[_Series, bool]:
        series = self._series.get(key)
        if series is not None:
            return series, False
        if len(self._series) < self.config.max_series:
            return self._new_series(key), False
        key = tuple(v if i in self._bounded else OTHER for i, v in enumerate(key))
        return self._series.get(key) or self._new_series(key), True

    def _new_series(self, key: Key) -> _Series:
        series = _Series(key, (self._requests.labels(*key), self._tokens.labels(*key, "input"),
                               self._tokens.labels(*key, "output"), self._tokens.labels(*key, "cached")))
        self._series[key] = series
        return series

    def _end_hour(self, now: float) -> None:
        """The counts so far belong to the hour that ended: into `pending` before counting on."""
        self._move_counts(self._hour)
        self._hour = hour_of(now)
        self._hour_end = (self._hour + 1) * 3600

    def _move_counts(self, hour: int) -> None:
        bucket = self.pending.setdefault(hour, {})
        for series in self._series.values():
            counts = series.counts()
            taken = series.taken
            if counts[0] != taken[0]:
                have = bucket.setdefault(series.key, [0, 0, 0, 0])
                for i in range(4):
                    have[i] += counts[i] - taken[i]
                series.taken = list(counts)
        if not bucket:
            del self.pending[hour]

    def take(self) -> dict[int, dict[Key, list[int]]]:
        """The counts since the last call, by hour and label set (for the store)."""
        now = time.time()
        if now >= self._hour_end:
            self._end_hour(now)
        self._move_counts(self._hour)
        pending, self.pending = self.pending, {}
        return pending
