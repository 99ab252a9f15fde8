"""The telemetry's own Prometheus metrics on the gateway's registry: the GenAI histograms
(`edgecore.genai`), dropped spans and the per-partner usage counters."""

from __future__ import annotations

from prometheus_client import Counter

from edgecore.genai import genai_metrics
from gateway.metrics import ChildCache, registry

genai = genai_metrics(registry)
token_usage_by = ChildCache(genai.token_usage)
ttft_by = ChildCache(genai.time_to_first_token)
tpot_by = ChildCache(genai.time_per_output_token)
duration_by = ChildCache(genai.request_duration)

spans_dropped_total = Counter("edgegw_otel_spans_dropped_total", "Spans not exported: queue_full (the "
                              "collector is slow or down) or export_failed", ["reason"], registry=registry)


def count_dropped(reason: str, spans: int) -> None:
    """`edgecore.otel.DropCounter` (called from the exporter's thread)."""
    spans_dropped_total.labels(reason).inc(spans)


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
