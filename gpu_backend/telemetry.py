"""The backend's side of the gateway's traces, and its GenAI metrics.

Traces are on when the standard OpenTelemetry variables name a collector
(`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; `OTEL_SERVICE_NAME`, default
`edgegw-backend`; `OTEL_TRACES_SAMPLER_ARG` for requests that arrive without a trace). A request's
`traceparent` (the gateway's upstream attempt) is continued: its server span gets three children, one
after the other, `queue wait` (submitted until its prefill began), `prefill` (until the first token)
and `decode` (until the last). They are recorded once the request has finished, with the times the
engine measured, so the engine loop never touches the tracer.

The GenAI histograms (`edgecore.genai`) are always kept, with the gateway's names and buckets.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client import Counter

from edgecore.genai import genai_metrics, operation_name
from edgecore.otel import settings_from_env, tracer_provider
from gpu_backend.metrics import BackendMetrics
from gpu_backend.sequence import Event

_PROPAGATOR = TraceContextTextMapPropagator()


def telemetry_of(state: Any) -> BackendTelemetry:
    """The process's telemetry (`BackendState.telemetry`), made with its metrics on first use."""
    if state.telemetry is None or state.telemetry.metrics is not state.metrics:
        state.telemetry = BackendTelemetry(state.metrics)
    return state.telemetry  # type: ignore[no-any-return]


class BackendTelemetry:
    """One per backend process."""

    def __init__(self, metrics: BackendMetrics) -> None:
        self.metrics = metrics
        self.genai = genai_metrics(metrics.registry)
        self.tracer: trace.Tracer | None = None
        settings = settings_from_env("edgegw-backend")
        if settings is not None:
            dropped = Counter("edgegw_backend_otel_spans_dropped_total", "Spans not exported: queue_full or "
                              "export_failed", ["reason"], registry=metrics.registry)
            self.provider = tracer_provider(settings, lambda reason, n: dropped.labels(reason).inc(n))
            self.tracer = self.provider.get_tracer("edgegw.backend")

    def begin(self, headers: Any, path: str, model: str, prompt_tokens: int, params: dict[str, Any]) -> Observation:
        return Observation(self, headers, path, model, prompt_tokens, params)

    def stop(self) -> None:
        if self.tracer is not None:
            self.provider.shutdown()


class Observation:
    """One generation request: its first-token timing as events arrive, then metrics and spans once."""

    __slots__ = ("telemetry", "parent", "path", "model", "op", "prompt_tokens", "params", "start_ns",
                 "start", "first_at", "timing", "completion_tokens", "reasons", "done")

    def __init__(self, telemetry: BackendTelemetry, headers: Any, path: str, model: str, prompt_tokens: int,
                 params: dict[str, Any]) -> None:
        self.telemetry = telemetry
        self.parent = None
        if telemetry.tracer is not None and "traceparent" in headers:
            self.parent = _PROPAGATOR.extract({"traceparent": headers["traceparent"]})
        self.path = path
        self.model = model
        self.op = operation_name(path)
        self.prompt_tokens = prompt_tokens
        self.params = params
        self.start_ns = time.time_ns()
        self.start = time.perf_counter()
        self.first_at: float | None = None
        self.timing: tuple[float, float] | None = None
        self.completion_tokens = 0
        self.reasons: list[str] = []
        self.done = False

    def event(self, ev: Event) -> None:
        if self.first_at is None and (ev.text or ev.finish_reason):
            self.first_at = time.perf_counter()
        if ev.timing is not None and self.timing is None:
            self.timing = ev.timing
        if ev.finish_reason is not None:
            self.completion_tokens += ev.completion_tokens
            self.reasons.append(ev.finish_reason)

    def finish(self) -> None:
        """Once, when the request has ended (its answer sent, failed, or its client gone)."""
        if self.done:
            return
        self.done = True
        completion_tokens, reasons = self.completion_tokens, self.reasons
        status = 500 if "error" in reasons else 499 if "abort" in reasons or not reasons else 200
        end = time.perf_counter()
        g, labels = self.telemetry.genai, (self.op, self.model)
        g.request_duration.labels(*labels).observe(end - self.start)
        if status == 200:
            g.token_usage.labels(*labels, "input").observe(self.prompt_tokens)
            g.token_usage.labels(*labels, "output").observe(completion_tokens)
        if self.first_at is not None:
            g.time_to_first_token.labels(*labels).observe(self.first_at - self.start)
            if completion_tokens > 1:
                g.time_per_output_token.labels(*labels).observe((end - self.first_at) / (completion_tokens - 1))
        if self.telemetry.tracer is not None:
            self._spans(end, completion_tokens, reasons, status)

    def _spans(self, end: float, completion_tokens: int, reasons: list[str], status: int) -> None:
        tracer = self.telemetry.tracer
        assert tracer is not None
        t0 = self.start_ns

        def at(perf: float) -> int:
            return t0 + int((perf - self.start) * 1e9)

        attrs: dict[str, Any] = {"http.request.method": "POST", "url.path": self.path, "http.route": self.path,
                                 "gen_ai.operation.name": self.op, "gen_ai.request.model": self.model,
                                 "gen_ai.response.model": self.model, "gen_ai.usage.input_tokens": self.prompt_tokens,
                                 "gen_ai.usage.output_tokens": completion_tokens,
                                 "http.response.status_code": status}
        for key in ("max_tokens", "temperature", "top_p"):
            value = self.params.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attrs[f"gen_ai.request.{key}"] = value
        if reasons:
            attrs["gen_ai.response.finish_reasons"] = reasons
        server = tracer.start_span(f"POST {self.path}", context=self.parent, kind=SpanKind.SERVER,
                                   start_time=t0, attributes=attrs)
        if status >= 500 or "error" in reasons:
            server.set_status(Status(StatusCode.ERROR, "engine_error"))
        inside = trace.set_span_in_context(server)
        if self.timing is not None:
            queued, prefill = self.timing
            q_end = t0 + int(queued * 1e9)
            p_end = q_end + int(prefill * 1e9)
            tracer.start_span("queue wait", context=inside, start_time=t0).end(end_time=q_end)
            tracer.start_span("prefill", context=inside, start_time=q_end,
                              attributes={"gen_ai.usage.input_tokens": self.prompt_tokens}).end(end_time=p_end)
            tracer.start_span("decode", context=inside, start_time=p_end,
                              attributes={"gen_ai.usage.output_tokens": completion_tokens}).end(end_time=at(end))
        server.end(end_time=at(end))
