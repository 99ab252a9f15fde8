"""OpenTelemetry trace export, shared by the gateway and the built-in backend.

The maintained SDK's `TracerProvider` with its OTLP/HTTP (protobuf) exporter behind its
`BatchSpanProcessor`: spans wait in a bounded queue and leave in batches from the processor's own
thread, so a request never waits on the collector. What cannot be sent is dropped and counted:
`queue_full` when the queue is at its bound (a dead or slow collector), `export_failed` when a batch
was refused or never arrived (after the exporter's own retries, bounded by `timeout_s`).

The built-in backend uses that path as it is. The gateway encodes its spans to OTLP bytes itself and
queues those (`gateway.telemetry.export`); they leave through `OtlpHttpSender`, the same exporter's
HTTP client, and are counted with the same reasons.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

log = logging.getLogger("edgecore.otel")

DropCounter = Callable[[str, int], None]  # (reason, spans)


@dataclass(frozen=True)
class ExportSettings:
    """Where and how spans leave the process."""

    endpoint: str  # the collector's traces URL (`.../v1/traces`)
    service_name: str
    sample_ratio: float = 1.0  # of new traces; a sampled parent's decision is kept
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # credentials: never logged
    max_queue_spans: int = 2048
    max_batch_spans: int = 512
    schedule_delay_ms: int = 1000
    timeout_s: float = 5.0


def traces_url(endpoint: str) -> str:
    """An OTLP/HTTP base URL (`http://collector:4318`) as its traces URL; a full traces URL as it is."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def parse_headers(text: str) -> dict[str, str]:
    """`k1=v1,k2=v2` (the OTEL_EXPORTER_OTLP_HEADERS format); malformed pairs are skipped."""
    from urllib.parse import unquote

    out: dict[str, str] = {}
    for pair in text.split(","):
        key, sep, value = pair.partition("=")
        if sep and key.strip():
            out[key.strip().lower()] = unquote(value.strip())
    return out


def settings_from_env(default_service: str, env: Mapping[str, str] | None = None) -> ExportSettings | None:
    """Settings from the standard OTEL_* variables, or None when they name no endpoint (or disable the SDK)."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true" or env.get("OTEL_TRACES_EXPORTER", "") == "none":
        return None
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint:
        return None
    ratio = 1.0
    try:
        ratio = min(1.0, max(0.0, float(env.get("OTEL_TRACES_SAMPLER_ARG", "1"))))
    except ValueError:
        pass
    headers = parse_headers(env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS", ""))
    return ExportSettings(endpoint=traces_url(endpoint), service_name=env.get("OTEL_SERVICE_NAME") or default_service,
                          sample_ratio=ratio, headers=headers)


class CountingExporter(SpanExporter):
    """The OTLP exporter, counting the spans of every batch that did not arrive."""

    def __init__(self, inner: SpanExporter, on_drop: DropCounter) -> None:
        self.inner = inner
        self.on_drop = on_drop
        self.taken = 0  # spans handed to export so far (read by `BoundedBatchProcessor`)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.taken += len(spans)
        try:
            result = self.inner.export(spans)
        except Exception:  # the processor would log and lose them: count them first
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            self.on_drop("export_failed", len(spans))
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


class BoundedBatchProcessor(SpanProcessor):
    """The SDK's `BatchSpanProcessor`, counting the spans its full queue pushes out.

    Its queue keeps the newest `max_queue_spans` spans and silently drops the oldest; the spans in it
    are those ended minus those handed to the exporter, so a span ended while that difference is at
    the bound pushes one out."""

    def __init__(self, exporter: CountingExporter, settings: ExportSettings, on_drop: DropCounter) -> None:
        self.exporter = exporter
        self.on_drop = on_drop
        self.bound = settings.max_queue_spans
        self.ended = 0
        self.pushed_out = 0
        self._lock = threading.Lock()
        self.batch = BatchSpanProcessor(exporter, max_queue_size=settings.max_queue_spans,
                                        schedule_delay_millis=settings.schedule_delay_ms,
                                        max_export_batch_size=min(settings.max_batch_spans, settings.max_queue_spans),
                                        export_timeout_millis=settings.timeout_s * 1000)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        with self._lock:
            full = self.ended - self.exporter.taken - self.pushed_out >= self.bound
            self.ended += 1
            if full:
                self.pushed_out += 1
        if full:
            self.on_drop("queue_full", 1)
        self.batch.on_end(span)

    def shutdown(self) -> None:
        self.batch.shutdown()  # type: ignore[no-untyped-call]

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.batch.force_flush(timeout_millis)


def span_processor(settings: ExportSettings, on_drop: DropCounter) -> BoundedBatchProcessor:
    """The batch processor and OTLP/HTTP exporter for `settings` (spans handed to its `on_end` leave)."""
    exporter = CountingExporter(OTLPSpanExporter(endpoint=settings.endpoint, headers=dict(settings.headers),
                                                 timeout=settings.timeout_s), on_drop)
    return BoundedBatchProcessor(exporter, settings, on_drop)


class OtlpHttpSender:
    """POSTs ready-made `ExportTraceServiceRequest` bytes through the SDK `OTLPSpanExporter`'s own HTTP
    client (the gateway encodes its spans itself, `gateway.telemetry.otlp_wire`): its headers,
    compression (`OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION`), retries with backoff on 429, 502, 503, 504
    and connection errors, and the overall timeout. Its transport is the SDK's urllib3 one, with the
    exporter's certificate variables (`OTEL_EXPORTER_OTLP_[TRACES_]CERTIFICATE`, `..._CLIENT_KEY`,
    `..._CLIENT_CERTIFICATE`): a POST through the default requests session costs three times the
    instructions (it merges proxy and netrc settings from the environment on every call, so
    `HTTPS_PROXY` does not apply here).

    Private SDK API, pinned in pyproject.toml: the exporter's `_transport` argument and `_client` (an
    `opentelemetry.exporter.otlp.common.http._OTLPHTTPClient`, whose `export(bytes)` is what the
    exporter's own `export` calls after encoding); tests/telemetry/test_otlp_wire.py sends through it."""

    def __init__(self, settings: ExportSettings) -> None:
        from opentelemetry.exporter.http.transport._urllib3 import Urllib3HTTPTransport

        env = os.environ
        verify = env.get("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE") or env.get("OTEL_EXPORTER_OTLP_CERTIFICATE") or True
        key = env.get("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY") or env.get("OTEL_EXPORTER_OTLP_CLIENT_KEY")
        cert = (env.get("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE")
                or env.get("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"))
        self.exporter = OTLPSpanExporter(
            endpoint=settings.endpoint, headers=dict(settings.headers), timeout=settings.timeout_s,
            _transport=Urllib3HTTPTransport(verify=verify, cert=(cert, key) if cert and key else cert))
        self._client = self.exporter._client

    def send(self, data: bytes) -> bool:
        """True when the collector took the batch (after the client's retries, bounded by its timeout)."""
        try:
            return bool(self._client.export(data).success)
        except Exception:  # a transport that raised: the batch is lost, the caller counts it
            log.warning("OTLP export failed", exc_info=True)
            return False

    def shutdown(self) -> None:
        """Close the connections; a retry waiting on its backoff gives up."""
        self.exporter.shutdown()  # type: ignore[no-untyped-call]


def resource(settings: ExportSettings, extra: Mapping[str, str] | None = None) -> Resource:
    return Resource.create({"service.name": settings.service_name, **(extra or {})})


def tracer_provider(settings: ExportSettings, on_drop: DropCounter,
                    extra: Mapping[str, str] | None = None) -> TracerProvider:
    """A provider exporting to `settings.endpoint`, sampling new traces at `settings.sample_ratio`."""
    provider = TracerProvider(resource=resource(settings, extra),
                              sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)))
    provider.add_span_processor(span_processor(settings, on_drop))
    return provider
