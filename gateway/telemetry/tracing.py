"""One request's spans: the server span, a child per pipeline stage and plugin, the inference span
with its GenAI attributes and one child per upstream attempt, whose context is sent to the backend
as `traceparent`.

    POST /v1/chat/completions (server)
      jwt_auth, wasm_auth > plugin NAME, ratelimit, wasm_routing, pool_select, cache, ...
      chat MODEL (client; gen_ai.*)
        upstream attempt 1 (client; endpoint, attempt, retry reason)  -> the backend's spans

Spans get their parent explicitly (no context variables), and nothing here runs for a request whose
trace is not sampled: `Tracing.begin` then returns None and only the trace context is passed on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from edgecore.genai import operation_name
from edgecore.otel import tracer_provider
from gateway.errors import GatewayError
from gateway.telemetry.config import TelemetryConfig
from gateway.telemetry.metrics import count_dropped

if TYPE_CHECKING:
    from gateway.context import RequestContext
    from gateway.stages.base import Stage

T = TypeVar("T")

_PROPAGATOR = TraceContextTextMapPropagator()
_CONTENT_LIMIT = 16384  # characters of prompt or answer text on a span (when a route opts in)


class Tracing:
    """The process's tracer for one telemetry configuration (kept across reloads that leave it alone)."""

    def __init__(self, config: TelemetryConfig) -> None:
        assert config.export is not None
        self.config = config
        self.provider = tracer_provider(config.export, count_dropped)
        self.tracer = self.provider.get_tracer("edgegw")
        self.trust_traceparent = config.trust_traceparent

    def begin(self, ctx: RequestContext) -> RequestTrace | None:
        """Start the request's server span; None (and only a context to pass on) when not sampled."""
        parent = None
        if self.trust_traceparent and "traceparent" in ctx.headers:
            parent = _PROPAGATOR.extract(ctx.headers)  # a malformed header yields an empty context
        span = self.tracer.start_span(f"{ctx.method} {ctx.path}", context=parent, kind=SpanKind.SERVER,
                                      attributes={"http.request.method": ctx.method, "url.path": ctx.path,
                                                  "http.route": ctx.path, "client.address": ctx.client_ip,
                                                  "edgegw.request_id": ctx.request_id})
        if not span.is_recording():
            ctx.trace_context = span.get_span_context()
            return None
        return RequestTrace(self.tracer, span)

    async def stop(self) -> None:
        """Send what is queued (bounded by the export timeout) and stop the export thread."""
        await asyncio.get_running_loop().run_in_executor(None, self.provider.shutdown)


class RequestTrace:
    """The spans of one sampled request (`ctx.trace`)."""

    __slots__ = ("tracer", "server", "root", "parent", "inference", "inference_ctx", "record_content",
                 "first_token_at", "started")

    def __init__(self, tracer: trace.Tracer, server: Span) -> None:
        self.tracer = tracer
        self.server = server
        self.root = trace.set_span_in_context(server)
        self.parent = self.root  # where a plugin's span goes: the running stage's
        self.inference: Span | None = None
        self.inference_ctx: Context | None = None
        self.record_content = False
        self.first_token_at: float | None = None
        self.started = time.perf_counter()

    # --- pipeline ----------------------------------------------------------------------------------

    async def stage(self, stage: Stage, ctx: RequestContext) -> Any:
        """Run `stage.on_request` in a span of its own."""
        span = self.tracer.start_span(stage.name, context=self.root)
        self.parent = trace.set_span_in_context(span)
        try:
            return await stage.on_request(ctx)
        except GatewayError as exc:
            _failed(span, exc.code)
            raise
        finally:
            if ctx.cache_status is not None and stage.name == "cache":
                span.set_attribute("edgegw.cache.status", ctx.cache_status)
            span.end()
            self.parent = self.root

    async def plugin(self, name: str, version: str, run: Awaitable[T]) -> T:
        """Run one plugin of a phase in a span of its own, under the phase's."""
        span = self.tracer.start_span(f"plugin {name}", context=self.parent,
                                      attributes={"edgegw.plugin.name": name, "edgegw.plugin.version": version})
        try:
            return await run
        except GatewayError as exc:
            _failed(span, exc.code)
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
        self.record_content = bool(route is not None and route.telemetry is not None and route.telemetry.record_content)
        if self.record_content:
            attrs["gen_ai.input.messages"] = _text(body.get("messages", body.get("prompt")))
            ctx.collect_response = True  # the answer's text, for `finish`
        self.inference = self.tracer.start_span(f"{op} {ctx.model or ''}".strip(), context=self.root,
                                                kind=SpanKind.CLIENT, attributes=attrs)
        self.inference_ctx = trace.set_span_in_context(self.inference)

    def attempt(self, endpoint: str, number: int, retry_reason: str | None, headers: dict[str, str]) -> Span:
        """A span for one upstream attempt; its context goes into `headers` as `traceparent`."""
        attrs: dict[str, Any] = {"server.address": endpoint, "edgegw.upstream.attempt": number}
        if retry_reason is not None:
            attrs["edgegw.upstream.retry_reason"] = retry_reason
        span = self.tracer.start_span(f"upstream attempt {number}", context=self.inference_ctx or self.root,
                                      kind=SpanKind.CLIENT, attributes=attrs)
        headers.pop("tracestate", None)
        _PROPAGATOR.inject(headers, context=trace.set_span_in_context(span))
        return span

    async def run_attempt(self, endpoint: str, number: int, retry_reason: str | None, headers: dict[str, str],
                          run: Awaitable[T]) -> T:
        """Run one upstream attempt in its span (ended when the answer's head arrived or the attempt failed)."""
        span = self.attempt(endpoint, number, retry_reason, headers)
        try:
            result = await run
        except BaseException as exc:
            _failed(span, exc.code if isinstance(exc, GatewayError) else type(exc).__name__)
            span.end()
            raise
        if isinstance(result, GatewayError):
            span.set_attribute("http.response.status_code", result.status)
            _failed(span, result.code)
        else:
            status = getattr(result, "status", None)
            if isinstance(status, int):
                span.set_attribute("http.response.status_code", status)
        span.end()
        return result

    def first_token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    # --- the end -----------------------------------------------------------------------------------

    def finish(self, ctx: RequestContext) -> None:
        """GenAI response attributes, HTTP status, and end every span still open."""
        inference = self.inference
        if inference is not None:
            usage = ctx.usage
            if usage is not None:
                inference.set_attribute("gen_ai.usage.input_tokens", usage.prompt_tokens)
                inference.set_attribute("gen_ai.usage.output_tokens", usage.completion_tokens)
                if usage.cached_tokens:
                    inference.set_attribute("gen_ai.usage.cache_read.input_tokens", usage.cached_tokens)
            answer = ctx.answer
            if answer is not None:
                if answer.model:
                    inference.set_attribute("gen_ai.response.model", answer.model)
                if answer.finish_reasons:
                    inference.set_attribute("gen_ai.response.finish_reasons", answer.finish_reasons)
                if answer.id:
                    inference.set_attribute("gen_ai.response.id", answer.id)
            if self.first_token_at is not None:
                inference.set_attribute("gen_ai.server.time_to_first_token", self.first_token_at - self.started)
            if self.record_content and ctx.response_body is not None:
                inference.set_attribute("gen_ai.output.messages", _text(ctx.response_body))
            if ctx.status >= 500 or ctx.error is not None and ctx.status >= 400:
                _failed(inference, ctx.error or str(ctx.status))
            inference.end()
        server = self.server
        server.set_attribute("http.response.status_code", ctx.status)
        if ctx.route is not None:
            server.set_attribute("edgegw.route", ctx.route.name)
        if ctx.subject is not None:
            server.set_attribute("enduser.id", ctx.subject)
        if ctx.status >= 500:
            _failed(server, ctx.error or str(ctx.status))
        elif ctx.error is not None:
            server.set_attribute("error.type", ctx.error)
        server.end()


def _failed(span: Span, code: str) -> None:
    span.set_attribute("error.type", code)
    span.set_status(Status(StatusCode.ERROR, code))


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    elif not isinstance(value, str):
        import orjson

        value = orjson.dumps(value).decode()
    return str(value)[:_CONTENT_LIMIT]
