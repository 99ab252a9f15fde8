"""One request's spans: the server span, a child per pipeline stage and plugin, the inference span
with its GenAI attributes and one child per upstream attempt, whose context is sent to the backend
as `traceparent`.

    POST /v1/chat/completions (server)
      jwt_auth, wasm_auth > plugin NAME, ratelimit, wasm_routing, pool_select, cache, ...
      chat MODEL (client; gen_ai.*)
        upstream attempt 1 (client; endpoint, attempt, retry reason)  -> the backend's spans

While the request runs, a span is a few plain fields (`_Span`); when it has ended they become the
SDK's `ReadableSpan`s, handed to its batch processor and OTLP exporter (`edgecore.otel`). The SDK's
tracer would cost several times more per span on the request path (docs/benchmarks.md). Sampling is
the SDK's `ParentBased(TraceIdRatioBased)` rule: a trusted parent's decision, else the trace id's low
64 bits against the ratio. An unsampled request records nothing; only its trace context is passed on.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from edgecore.genai import operation_name
from edgecore.otel import resource, span_processor
from gateway.errors import GatewayError
from gateway.telemetry.config import TelemetryConfig, route_telemetry
from gateway.telemetry.metrics import count_dropped

if TYPE_CHECKING:
    from gateway.context import RequestContext
    from gateway.pipeline.stage import Stage

T = TypeVar("T")

_PROPAGATOR = TraceContextTextMapPropagator()
_CONTENT_LIMIT = 16384  # characters of prompt or answer text on a span (when a route opts in)
_LOW_64 = (1 << 64) - 1
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)


class Tracing:
    """The process's tracer for one telemetry configuration (kept across reloads that leave it alone)."""

    def __init__(self, config: TelemetryConfig) -> None:
        assert config.export is not None
        self.config = config
        self.processor = span_processor(config.export, count_dropped)
        self.resource = resource(config.export)
        self.scope = InstrumentationScope("edgegw")
        self.bound = TraceIdRatioBased.get_bound_for_rate(config.export.sample_ratio)
        self.trust_traceparent = config.trust_traceparent

    def begin(self, ctx: RequestContext) -> RequestTrace | None:
        """Start the request's server span; None (and only a context to pass on) when not sampled."""
        parent: SpanContext | None = None
        if self.trust_traceparent and "traceparent" in ctx.headers:
            # A malformed header yields an invalid context: ignored, a new trace starts.
            found = trace.get_current_span(_PROPAGATOR.extract(ctx.headers)).get_span_context()
            parent = found if found.is_valid else None
        if parent is not None:
            trace_id, sampled = parent.trace_id, parent.trace_flags.sampled
        else:
            trace_id = random.getrandbits(128) or 1
            sampled = trace_id & _LOW_64 < self.bound
        if not sampled:
            ctx.trace_context = SpanContext(trace_id, _span_id(), False, TraceFlags(TraceFlags.DEFAULT))
            return None
        return RequestTrace(self, trace_id, parent, ctx)

    def export(self, request: RequestTrace) -> None:
        """Hand the request's ended spans to the batch processor (which never blocks)."""
        trace_id, remote = request.trace_id, request.remote_parent
        contexts = {s.span_id: SpanContext(trace_id, s.span_id, False, _SAMPLED) for s in request.spans}
        if remote is not None:
            contexts[remote.span_id] = remote
        for s in request.spans:
            status = _UNSET if s.error is None else Status(StatusCode.ERROR, s.error)
            self.processor.on_end(ReadableSpan(
                name=s.name, context=contexts[s.span_id], parent=contexts.get(s.parent_id), resource=self.resource,
                attributes=s.attributes, kind=s.kind, start_time=s.start_ns, end_time=s.end_ns or time.time_ns(),
                status=status, instrumentation_scope=self.scope))

    async def stop(self) -> None:
        """Send what is queued (bounded by the export timeout) and stop the export thread."""
        import asyncio

        await asyncio.get_running_loop().run_in_executor(None, self.processor.shutdown)


def _span_id() -> int:
    return random.getrandbits(64) or 1


class _Span:
    """A span while its request runs: plain fields, made a `ReadableSpan` by `Tracing.export`."""

    __slots__ = ("name", "span_id", "parent_id", "kind", "attributes", "start_ns", "end_ns", "error")

    def __init__(self, name: str, parent_id: int, kind: SpanKind, attributes: dict[str, Any]) -> None:
        self.name = name
        self.span_id = _span_id()
        self.parent_id = parent_id
        self.kind = kind
        self.attributes = attributes
        self.start_ns = time.time_ns()
        self.end_ns = 0
        self.error: str | None = None

    def end(self) -> None:
        self.end_ns = time.time_ns()

    def failed(self, code: str) -> None:
        self.attributes["error.type"] = code
        self.error = code


class RequestTrace:
    """The spans of one sampled request (`ctx.trace`)."""

    __slots__ = ("tracing", "trace_id", "remote_parent", "spans", "server", "parent", "inference",
                 "record_content", "first_token_at", "started")

    def __init__(self, tracing: Tracing, trace_id: int, remote_parent: SpanContext | None,
                 ctx: RequestContext) -> None:
        self.tracing = tracing
        self.trace_id = trace_id
        self.remote_parent = remote_parent
        self.server = _Span(f"{ctx.method} {ctx.path}", remote_parent.span_id if remote_parent else 0,
                            SpanKind.SERVER, {"http.request.method": ctx.method, "url.path": ctx.path,
                                              "http.route": ctx.path, "client.address": ctx.client_ip,
                                              "edgegw.request_id": ctx.request_id})
        self.spans = [self.server]
        self.parent = self.server.span_id  # where a plugin's span goes: the running stage's
        self.inference: _Span | None = None
        self.record_content = False
        self.first_token_at: float | None = None
        self.started = time.perf_counter()

    def _open(self, name: str, parent_id: int, kind: SpanKind = SpanKind.INTERNAL,
              attributes: dict[str, Any] | None = None) -> _Span:
        span = _Span(name, parent_id, kind, attributes if attributes is not None else {})
        self.spans.append(span)
        return span

    # --- pipeline ----------------------------------------------------------------------------------

    async def stage(self, stage: Stage, ctx: RequestContext) -> Any:
        """Run `stage.on_request` in a span of its own."""
        span = self._open(stage.name, self.server.span_id)
        self.parent = span.span_id
        try:
            return await stage.on_request(ctx)
        except GatewayError as exc:
            span.failed(exc.code)
            raise
        finally:
            if ctx.cache_status is not None and stage.name == "cache":
                span.attributes["edgegw.cache.status"] = ctx.cache_status
            span.end()
            self.parent = self.server.span_id

    async def plugin(self, name: str, version: str, run: Awaitable[T]) -> T:
        """Run one plugin of a phase in a span of its own, under the phase's."""
        span = self._open(f"plugin {name}", self.parent, attributes={"edgegw.plugin.name": name,
                                                                      "edgegw.plugin.version": version})
        try:
            return await run
        except GatewayError as exc:
            span.failed(exc.code)
            raise
        finally:
            span.end()

    # --- upstream ----------------------------------------------------------------------------------

    def begin_inference(self, ctx: RequestContext) -> None:
        """The GenAI client span around every attempt to the pool (`gen_ai.*` request attributes)."""
        op = operation_name(ctx.path)
        body = ctx.body_json or {}
        attrs: dict[str, Any] = {"gen_ai.operation.name": op, "gen_ai.provider.name": "edgegw"}
        if ctx.model:
            attrs["gen_ai.request.model"] = ctx.model
        if ctx.pool is not None:
            attrs["edgegw.pool"] = ctx.pool.name
        for key, attr in (("max_tokens", "gen_ai.request.max_tokens"), ("temperature", "gen_ai.request.temperature"),
                          ("top_p", "gen_ai.request.top_p"), ("frequency_penalty", "gen_ai.request.frequency_penalty"),
                          ("seed", "gen_ai.request.seed")):
            value = body.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attrs[attr] = value
        if ctx.stream:
            attrs["edgegw.stream"] = True
        route = ctx.route
        settings = route_telemetry(route) if route is not None else None
        self.record_content = settings is not None and settings.record_content
        if self.record_content:
            attrs["gen_ai.input.messages"] = _text(body.get("messages", body.get("prompt")))
            ctx.collect_response = True  # the answer's text, for `finish`
        self.inference = self._open(f"{op} {ctx.model or ''}".strip(), self.server.span_id, SpanKind.CLIENT, attrs)

    async def run_attempt(self, endpoint: str, number: int, retry_reason: str | None, headers: dict[str, str],
                          run: Awaitable[T]) -> T:
        """Run one upstream attempt in its span (ended when the answer's head arrived or the attempt
        failed); the span's context goes to the backend as `traceparent`."""
        attrs: dict[str, Any] = {"server.address": endpoint, "edgegw.upstream.attempt": number}
        if retry_reason is not None:
            attrs["edgegw.upstream.retry_reason"] = retry_reason
        parent = self.inference.span_id if self.inference is not None else self.server.span_id
        span = self._open(f"upstream attempt {number}", parent, SpanKind.CLIENT, attrs)
        headers.pop("tracestate", None)
        headers["traceparent"] = f"00-{self.trace_id:032x}-{span.span_id:016x}-01"
        try:
            result = await run
        except BaseException as exc:
            span.failed(exc.code if isinstance(exc, GatewayError) else type(exc).__name__)
            span.end()
            raise
        status = getattr(result, "status", None)
        if isinstance(status, int):
            attrs["http.response.status_code"] = status
        if isinstance(result, GatewayError):
            span.failed(result.code)
        span.end()
        return result

    def first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    # --- the end -----------------------------------------------------------------------------------

    def finish(self, ctx: RequestContext) -> None:
        """GenAI response attributes and HTTP status; end the open spans and export them all."""
        inference = self.inference
        if inference is not None:
            attrs = inference.attributes
            usage = ctx.usage
            if usage is not None:
                attrs["gen_ai.usage.input_tokens"] = usage.prompt_tokens
                attrs["gen_ai.usage.output_tokens"] = usage.completion_tokens
                if usage.cached_tokens:
                    attrs["gen_ai.usage.cache_read.input_tokens"] = usage.cached_tokens
            answer = ctx.answer
            if answer is not None:
                if answer.model:
                    attrs["gen_ai.response.model"] = answer.model
                if answer.finish_reasons:
                    attrs["gen_ai.response.finish_reasons"] = answer.finish_reasons
                if answer.id:
                    attrs["gen_ai.response.id"] = answer.id
            if self.first_token_at is not None:
                attrs["gen_ai.server.time_to_first_token"] = self.first_token_at - self.started
            if self.record_content and ctx.response_body is not None:
                attrs["gen_ai.output.messages"] = _text(ctx.response_body)
            if ctx.status >= 500 or ctx.error is not None and ctx.status >= 400:
                inference.failed(ctx.error or str(ctx.status))
            inference.end()
        server = self.server
        attrs = server.attributes
        attrs["http.response.status_code"] = ctx.status
        if ctx.route is not None:
            attrs["edgegw.route"] = ctx.route.name
        if ctx.subject is not None:
            attrs["enduser.id"] = ctx.subject
        if ctx.status >= 500:
            server.failed(ctx.error or str(ctx.status))
        elif ctx.error is not None:
            attrs["error.type"] = ctx.error
        server.end()
        self.tracing.export(self)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    elif not isinstance(value, str):
        import orjson

        value = orjson.dumps(value).decode()
    return str(value)[:_CONTENT_LIMIT]
