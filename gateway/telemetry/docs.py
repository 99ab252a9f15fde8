"""What the keys of `telemetry:`, `routes[].telemetry` and `pools[].prices` mean: their rows of
docs/configuration.md (types, defaults and ranges come from the parsers' own reads)."""

from __future__ import annotations

from gateway.config.part import KeyDocs

_DESCRIPTIONS: dict[str, str] = {
    "telemetry": "OpenTelemetry traces, GenAI metrics and per-partner usage (`docs/observability.md`); "
                 "absent: none of them, and the request path runs no telemetry code",
    "telemetry.otlp_endpoint": "the collector's OTLP/HTTP base URL (`/v1/traces` is appended unless given); "
                               "absent: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT`; "
                               "none of them: no traces (metrics and usage still on)",
    "telemetry.service_name": "`service.name` of the gateway's spans (default: `OTEL_SERVICE_NAME`, else `edgegw`)",
    "telemetry.sample_ratio": "share of new traces recorded (default: `OTEL_TRACES_SAMPLER_ARG`, else 1); a "
                              "trusted client's `traceparent` keeps its own decision",
    "telemetry.headers_env": "environment variable holding the exporter's headers as `k1=v1,k2=v2` (a "
                             "collector's credentials; default: `OTEL_EXPORTER_OTLP_HEADERS`)",
    "telemetry.trust_traceparent": "continue a client's W3C `traceparent`; false for untrusted clients (their "
                                   "trace context is replaced, never passed to a backend)",
    "telemetry.max_queue_spans": "spans waiting for export; beyond it the oldest are dropped and counted in "
                                 "`edgegw_otel_spans_dropped_total{reason=\"queue_full\"}`",
    "telemetry.max_batch_spans": "spans per export request",
    "telemetry.schedule_delay_ms": "how long spans wait to fill a batch",
    "telemetry.export_timeout_s": "bound on one export (retries included); a failed batch counts as "
                                  "`reason=\"export_failed\"`",
    "telemetry.usage": "per-partner usage counters and `GET /admin/usage`",
    "telemetry.usage.enabled": "false: no usage counters",
    "telemetry.usage.labels": "what usage is counted by: `issuer`, `subject`, `model`, `route`, or `claim:NAME` "
                              "(a JWT claim such as `claim:tenant`)",
    "telemetry.usage.max_series": "distinct label sets per worker; beyond it the partner labels read `other` "
                                  "(model and route stay) and `edgegw_usage_overflow_total` counts the request",
    "telemetry.usage.retention_h": "hours of usage buckets kept in Redis (in memory at most 168)",
    "routes[].telemetry": "what this route's spans may carry",
    "routes[].telemetry.record_content": "record prompt and answer text on the inference span "
                                         "(`gen_ai.input.messages`, `gen_ai.output.messages`)",
    "pools[].prices": "per-model prices: usage reports turn tokens into cost",
    "pools[].prices.*": "one model's prices",
    "pools[].prices.*.input_per_1m": "price of a million input tokens",
    "pools[].prices.*.output_per_1m": "price of a million output tokens",
    "pools[].prices.*.cached_input_per_1m": "price of a million input tokens served from the backend's prefix "
                                           "cache (default: the input price)",
}

_DEFAULTS: dict[str, str] = {
    "telemetry": "off",
    "routes[].telemetry": "no content recorded",
    "pools[].prices": "no costs",
    "pools[].prices.*": "-",
}

_NOTES: dict[str, str] = {
    "telemetry": "Span tree, collectors (OpenTelemetry Collector, Jaeger, Tempo), usage and costs: "
                 "`docs/observability.md`.",
}

DOCS = KeyDocs(descriptions=_DESCRIPTIONS, defaults=_DEFAULTS, notes=_NOTES, tables=("telemetry",),
               free_form=("pools[].prices",))
