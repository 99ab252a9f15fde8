"""The telemetry's own Prometheus metrics on the gateway's registry: the GenAI histograms
(`edgecore.genai`), dropped spans and the per-partner usage counters.

The GenAI histograms are observed on every inference request, so they are batched like the
gateway's per-request counters (`edgecore.metrics`): an observation is a bucket search and two
additions per histogram into plain lists (`GenAiSeries`; one C call, `_genai.c`, where setup.py built
it), moved into the Prometheus children by `flush`, which runs before every collection, so no scrape
reads stale values. The client's own `observe` takes a lock per value update and loops over the
buckets in Python: several times the cost.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter

from edgecore.genai import (
    DURATION_BUCKETS,
    TOKEN_BUCKETS,
    TPOT_BUCKETS,
    TTFT_BUCKETS,
    genai_metrics,
    operation_name,
)
from edgecore.metrics import flush, schedule, track
from gateway.metrics import registry

genai = genai_metrics(registry)

spans_dropped_total = Counter("edgegw_otel_spans_dropped_total", "Spans not exported: queue_full (the "
                              "collector is slow or down) or export_failed", ["reason"], registry=registry)


def count_dropped(reason: str, spans: int) -> None:
    """`edgecore.otel.DropCounter` (called from the exporter's thread)."""
    spans_dropped_total.labels(reason).inc(spans)


_INF = float("inf")
_DURATION = [*map(float, DURATION_BUCKETS), _INF]  # upper bounds as the client keeps them (floats, +Inf last)
_TOKENS = [*map(float, TOKEN_BUCKETS), _INF]
_TTFT = [*map(float, TTFT_BUCKETS), _INF]
_TPOT = [*map(float, TPOT_BUCKETS), _INF]
_BOUNDS = (_DURATION, _TOKENS, _TOKENS, _TTFT, _TPOT)  # by histogram, in `GenAiSeries.counts`' order


def python_tally(bounds: tuple[list[float], ...], counts: list[list[int]], sums: list[float], elapsed: float,
                 input_tokens: int | None, output_tokens: int, first_s: float | None) -> bool:
    """Count one request's observations (as `GenAiSeries.observe` takes them) into `counts` (per histogram,
    per bucket: not cumulative) and `sums`. Compiled in `_genai.c` (`tally`) where setup.py built it:
    that one returns False, having counted nothing, for values it hands back to this one."""
    counts[0][bisect_left(bounds[0], elapsed)] += 1  # the first bucket whose bound is >= the value
    sums[0] += elapsed
    if input_tokens is not None:
        counts[1][bisect_left(bounds[1], input_tokens)] += 1
        sums[1] += input_tokens
        counts[2][bisect_left(bounds[2], output_tokens)] += 1
        sums[2] += output_tokens
    if first_s is not None:
        counts[3][bisect_left(bounds[3], first_s)] += 1
        sums[3] += first_s
        if input_tokens is not None and output_tokens > 1:
            tpot = max(0.0, elapsed - first_s) / (output_tokens - 1)
            counts[4][bisect_left(bounds[4], tpot)] += 1
            sums[4] += tpot
    return True


tally: Callable[[tuple[list[float], ...], list[list[int]], list[float], float, int | None, int, float | None], bool]
tally = python_tally
try:
    from gateway.telemetry._genai import tally
except ImportError:  # built without a C compiler
    pass


class GenAiSeries:
    """The GenAI histograms of one (operation, model), observed once per request (`observe`): the
    observations are counted here per bucket and moved into the client's children by `flush`.

    Only `observe` (the event loop) writes `counts`, `sums` and `n`; only `flush` (under the metrics
    lock, any thread) writes the `done` copies, so a flush loses nothing: it moves differences. It
    adds to the children's `_buckets` (one value per bucket, not cumulative) and `_sum`: private
    client API (prometheus-client is pinned in pyproject.toml; tests/telemetry/test_genai_batching.py
    compares the exposition with the client's own `observe`)."""

    __slots__ = ("children", "counts", "sums", "n", "done_counts", "done_sums", "done_n", "__weakref__")

    def __init__(self, operation: str, model: str) -> None:
        # 0 duration, 1 input tokens, 2 output tokens, 3 time to first token, 4 time per output token
        self.children: tuple[Any, ...] = (
            genai.request_duration.labels(operation, model), genai.token_usage.labels(operation, model, "input"),
            genai.token_usage.labels(operation, model, "output"), genai.time_to_first_token.labels(operation, model),
            genai.time_per_output_token.labels(operation, model))
        for child, upper in zip(self.children, _BOUNDS, strict=True):
            assert list(child._upper_bounds) == upper, "edgecore.genai's buckets changed"
        self.counts = [[0] * len(b) for b in _BOUNDS]
        self.done_counts = [[0] * len(b) for b in _BOUNDS]
        self.sums = [0.0] * 5
        self.done_sums = [0.0] * 5
        self.n = self.done_n = 0
        track(self)

    def observe(self, elapsed: float, input_tokens: int | None, output_tokens: int, first_s: float | None) -> None:
        """One request: its duration, its tokens (None: no usage), and for a streamed 200 its time to
        the first chunk (then the time per output token after the first)."""
        if self.n == self.done_n:
            schedule()
        self.n += 1
        if not tally(_BOUNDS, self.counts, self.sums, elapsed, input_tokens, output_tokens, first_s):
            # handed back by the compiled tally (an int beyond 64 bits, a float subclass)
            python_tally(_BOUNDS, self.counts, self.sums, elapsed, input_tokens, output_tokens, first_s)

    def flush(self) -> None:
        n = self.n
        if n == self.done_n:
            return
        for h, child in enumerate(self.children):
            counts, done = self.counts[h], self.done_counts[h]
            if counts != done:  # (one C-level comparison: a histogram not observed since costs no loop)
                for i, count in enumerate(counts):
                    if count != done[i]:
                        child._buckets[i].inc(count - done[i])
                        done[i] = count
            total = self.sums[h]
            if total != self.done_sums[h]:
                child._sum.inc(total - self.done_sums[h])
                self.done_sums[h] = total
        self.done_n = n


_MAX_SERIES = 1024  # (path, model) pairs kept; beyond, the table starts again (after a flush)
_series: dict[tuple[str, str], GenAiSeries] = {}


def genai_series(path: str, model: str) -> GenAiSeries:
    """The histograms of a request's path (its operation) and model."""
    found = _series.get((path, model))
    if found is None:
        if len(_series) >= _MAX_SERIES:
            flush()  # what the dropped entries hold reaches their children first
            _series.clear()
        found = _series[path, model] = GenAiSeries(operation_name(path), model)
    return found


_usage_families: dict[tuple[str, ...], tuple[Counter, Counter]] = {}


def usage_counters(labels: tuple[str, ...]) -> tuple[Counter, Counter]:
    """(requests, tokens) counters keyed by `labels` (a policy's usage labels, registered once per set)."""
    found = _usage_families.get(labels)
    if found is None:
        if _usage_families:  # a reload changed the labels: one family name, one label set
            for old in _usage_families.pop(next(iter(_usage_families))):
                registry.unregister(old)
        found = (Counter("edgegw_usage_requests_total", "Requests by partner (the policy's usage labels)",
                         list(labels), registry=registry),
                 Counter("edgegw_usage_tokens_total", "Tokens by partner and type (input, output, cached)",
                         [*labels, "type"], registry=registry))
        _usage_families[labels] = found
    return found


usage_overflow_total = Counter("edgegw_usage_overflow_total", "Requests counted as `other` because the usage "
                               "series cap (telemetry.usage.max_series) was reached", registry=registry)
