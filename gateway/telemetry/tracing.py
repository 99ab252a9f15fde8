"""One request's spans: the server span, a child per pipeline stage and plugin, the inference span
with its GenAI attributes and one child per upstream attempt, whose context is sent to the backend
as `traceparent`.

    POST /v1/chat/completions (server)
      jwt_auth, wasm_auth > plugin NAME, ratelimit, wasm_routing, pool_select, cache, ...
      chat MODEL (client; gen_ai.*)
        upstream attempt 1 (client; endpoint, attempt, retry reason)  -> the backend's spans

A span is recorded as a plain tuple when it ends (`otlp_wire.Span`); the pipeline's stages only mark
the time (`RequestTrace.mark`). When the request has ended, its spans are written as OTLP protobuf
bytes (`otlp_wire`, compiled where built) and queued for the export thread (`export`),
which sends them in batches through the SDK OTLP exporter's HTTP client. The SDK's tracer, and its
exporter's per-span protobuf messages, cost several times more per span (docs/benchmarks.md). Sampling is
the SDK's `ParentBased(TraceIdRatioBased)` rule: a trusted parent's decision, else the trace id's low
64 bits against the ratio. An unsampled request records nothing; only its trace context is passed on.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from edgecore.genai import operation_name
from edgecore.otel import OtlpHttpSender, resource
from gateway.errors import GatewayError
from gateway.telemetry.config import NAME, RouteTelemetry, TelemetryConfig
from gateway.telemetry.export import SpanExport
from gateway.telemetry.metrics import count_dropped
from gateway.telemetry.otlp_wire import (
    CLIENT,
    INTERNAL,
    NO_ATTRIBUTES,
    SERVER,
    Attributes,
    BatchHead,
    Span,
    encode_spans,
)
from gateway.telemetry.propagation import traceparent
from gateway.telemetry.request_params import NONE, PARAMS, request_params

if TYPE_CHECKING:
    from gateway.context import RequestContext

T = TypeVar("T")

_PROPAGATOR = TraceContextTextMapPropagator()
_CONTENT_LIMIT = 16384  # characters of prompt or answer text on a span (when a route opts in)
_LOW_64 = (1 << 64) - 1
SCOPE = "edgegw"  # the instrumentation scope of the gateway's spans
_random_bits = random.getrandbits
_now = time.time_ns
# Each kind of span's attribute keys (`otlp_wire.Attributes`): its values are a tuple in this order.
_SERVER_KEYS = ("http.request.method", "url.path", "http.route", "client.address", "edgegw.request_id",
                "http.response.status_code", "edgegw.route", "enduser.id", "error.type")
_PLUGIN_KEYS = ("edgegw.plugin.name", "edgegw.plugin.version", "error.type")
_ATTEMPT_KEYS = ("server.address", "edgegw.upstream.attempt", "edgegw.upstream.retry_reason",
                 "http.response.status_code", "error.type")
# The inference span's: what the request asked (known as the first attempt begins), then the answer's.
_REQUEST_KEYS = ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model", "edgegw.pool",
                 *(f"gen_ai.request.{key}" for key, _ in PARAMS), "edgegw.stream", "gen_ai.input.messages")
_INFERENCE_KEYS = (*_REQUEST_KEYS, "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
                   "gen_ai.usage.cache_read.input_tokens", "gen_ai.response.model", "gen_ai.response.finish_reasons",
                   "gen_ai.response.id", "gen_ai.server.time_to_first_token", "gen_ai.output.messages", "error.type")


class Tracing:
    """The process's tracer for one telemetry configuration (kept across reloads that leave it alone)."""

    def __init__(self, config: TelemetryConfig) -> None:
        assert config.export is not None
        self.config = config
        self.resource = resource(config.export)
        sender = OtlpHttpSender(config.export)
        self.queue = SpanExport(config.export, BatchHead(self.resource.attributes, SCOPE), sender.send,
                                count_dropped, sender.shutdown)
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
            trace_id = _random_bits(128) or 1
            sampled = trace_id & _LOW_64 < self.bound
        if not sampled:
            ctx.trace_context = (trace_id, _random_bits(64) or 1)  # `propagation.propagate_unsampled`
            return None
        return RequestTrace(self, trace_id, parent)

    async def stop(self) -> None:
        """Send what is queued (bounded by the export timeout) and stop the export thread."""
        import asyncio

        await asyncio.get_running_loop().run_in_executor(None, self.queue.shutdown)


class RequestTrace:
    """The spans of one sampled request (`ctx.trace`).

    Recorded cheaply as the request runs: the pipeline `mark`s the time as its stages begin and after
    each one's `on_request` (stage i of `ctx.ran` spans marks i to i + 1); plugins, upstream attempts and
    earlier inference spans are `otlp_wire.Span` tuples in `spans`. `finish` makes the server, stage and
    inference spans and encodes them all. Span ids: the server span's is random (at least 2**32), every
    other one is it XOR a small number (stage i: i + 1; the rest from 256 up): distinct and never 0."""

    __slots__ = ("tracing", "trace_id", "remote_parent", "spans", "root", "server_id", "server_start", "marks",
                 "failed", "next_id", "inference", "record_content")

    def __init__(self, tracing: Tracing, trace_id: int, remote_parent: SpanContext | None) -> None:
        self.tracing = tracing
        self.trace_id = trace_id
        self.remote_parent = remote_parent
        self.spans: list[Span] = []
        self.root: Span | None = None  # the server span, once `finish` ended it
        self.server_id = _random_bits(64) | _ID_FLOOR
        self.server_start = _now()
        self.marks: list[int] = []
        self.failed: str | None = None  # the error of the stage that raised
        self.next_id = 256
        # name, span id, the values of its `_REQUEST_KEYS`, start
        self.inference: tuple[str, int, tuple[Any, ...], int] | None = None
        self.record_content = False

    # --- pipeline ----------------------------------------------------------------------------------

    def mark(self, error: str | None = None) -> None:
        """Now, as the stages begin and after each stage; `error`: the stage raised it."""
        self.marks.append(_now())
        if error is not None:
            self.failed = error

    async def plugin(self, name: str, version: str, run: Awaitable[T]) -> T:
        """Run one plugin of a phase in a span of its own, under the phase's (the running stage's)."""
        server = self.server_id
        span_id, parent = server ^ self._new_id(), server ^ len(self.marks) if self.marks else server
        error = None
        start = _now()
        try:
            return await run
        except GatewayError as exc:
            error = exc.code
            raise
        finally:
            self.spans.append((f"plugin {name}", span_id, parent, INTERNAL, (_PLUGIN_KEYS, (name, version, error)),
                               start, _now(), error))

    def _new_id(self) -> int:
        n = self.next_id = self.next_id + 1
        return n

    # --- upstream ----------------------------------------------------------------------------------

    def begin_inference(self, ctx: RequestContext) -> None:
        """The GenAI client span around every attempt to the pool (`gen_ai.*` request attributes). A
        fallback to another model begins another: the previous one ends here."""
        if self.inference is not None:
            name, span_id, values, start = self.inference
            self.spans.append((name, span_id, self.server_id, CLIENT, (_REQUEST_KEYS, values), start, _now(), None))
        model, pool = ctx.model, ctx.pool
        op = _operations.get(ctx.path) or _operation(ctx.path)
        body = ctx.body_json
        max_tokens, temperature, top_p, penalty, seed = request_params(body) if body else NONE
        messages = None
        route = ctx.route
        settings = route.sections.get(NAME) if route is not None else None  # `config.route_telemetry`
        if settings is not None:
            self.record_content = isinstance(settings, RouteTelemetry) and settings.record_content
            if self.record_content:
                messages = _text((body or {}).get("messages", (body or {}).get("prompt")))
                ctx.collect_response = True  # the answer's text, for `finish`
        values = (op, "edgegw", model, pool.name if pool is not None else None, max_tokens, temperature, top_p, penalty,
                  seed, True if ctx.stream else None, messages)
        self.inference = (f"{op} {model}" if model else op, self.server_id ^ self._new_id(), values, _now())

    def begin_attempt(self, headers: dict[str, str]) -> tuple[int, int]:
        """An upstream attempt starts: its span's context goes to the backend as `traceparent`.
        Returns what `end_attempt` takes: (span id, start)."""
        span_id = self.server_id ^ self._new_id()
        headers.pop("tracestate", None)
        headers["traceparent"] = traceparent(self.trace_id, span_id, True)
        return span_id, _now()

    def end_attempt(self, begun: tuple[int, int], endpoint: str, number: int, retry_reason: str | None,
                    status: int | None, error: str | None) -> None:
        """The attempt's span ends: the answer's head arrived (`status`), or it failed (`error`: the
        code of the GatewayError it returned or raised, or the name of another exception)."""
        span_id, start = begun
        attrs = (_ATTEMPT_KEYS, (endpoint, number, retry_reason, status, error))
        parent = self.inference[1] if self.inference is not None else self.server_id
        name = _ATTEMPTS[number] if number < len(_ATTEMPTS) else f"upstream attempt {number}"
        self.spans.append((name, span_id, parent, CLIENT, attrs, start, _now(), error))

    # --- the end -----------------------------------------------------------------------------------

    def finish(self, ctx: RequestContext) -> None:
        """GenAI response attributes and HTTP status; end the open spans and export them all."""
        now = _now()
        status = ctx.status
        server = self.server_id
        spans = self.spans
        marks = self.marks
        if marks:
            stage_spans(spans, server, ctx.ran, marks, self.failed, now)
            if ctx.cache_status is not None:
                self._cache_status(ctx.cache_status)
        if self.inference is not None:
            spans.append(self._inference_span(ctx, status, now))
        route = ctx.route
        error = None
        if status >= 500:
            error = ctx.error or str(status)
        path = ctx.path
        attrs = (_SERVER_KEYS, (ctx.method, path, path, ctx.client_ip, ctx.request_id, status,
                                route.name if route is not None else None, ctx.subject, error or ctx.error))
        remote = self.remote_parent
        root = self.root = (f"{ctx.method} {path}", server, remote.span_id if remote is not None else 0, SERVER,
                            attrs, self.server_start, now, error)
        # encoded here and queued for the export thread (which never blocks this)
        self.tracing.queue.put(len(spans) + 1, encode_spans(self.trace_id, root, spans, remote is not None))

    def _cache_status(self, status: str) -> None:
        for i, span in enumerate(self.spans):
            if span[0] == "cache" and span[3] == INTERNAL:
                name, span_id, parent, kind, (keys, values), start, end, error = span
                attrs = ((*keys, "edgegw.cache.status"), (*values, status))
                self.spans[i] = (name, span_id, parent, kind, attrs, start, end, error)

    def _inference_span(self, ctx: RequestContext, status: int, now: int) -> Span:
        name, span_id, request, start = self.inference  # type: ignore[misc]
        usage = ctx.usage
        input_tokens = output_tokens = cached = None
        if usage is not None:
            input_tokens, output_tokens, cached = usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens or None
        answer = ctx.answer
        model = ident = reasons = first_s = None
        if answer is not None:
            model, ident, first_s = answer.model or None, answer.id or None, answer.first_chunk_s
            if answer.finish_reasons:
                reasons = tuple(answer.finish_reasons)
        text = None
        if self.record_content and ctx.response_body is not None:
            text = _text(ctx.response_body)
        error = None
        if status >= 500 or ctx.error is not None and status >= 400:
            error = ctx.error or str(status)
        attrs = (_INFERENCE_KEYS, request + (input_tokens, output_tokens, cached, model, reasons, ident, first_s, text,
                                             error))
        return name, span_id, self.server_id, CLIENT, attrs, start, now, error


_ATTEMPTS = tuple(f"upstream attempt {n}" for n in range(16))  # span names by attempt number
_ID_FLOOR = 1 << 32  # set in the server span's id: XOR with a number below it is never 0


def python_stage_spans(spans: list[Span], server: int, stages: Sequence[Any], marks: list[int], failed: str | None,
                       now: int) -> None:
    """Append the pipeline's stage spans to `spans`, children of the server span `server`: stage k of
    `stages` (from 1; `ctx.ran`) ran from mark k - 1 to mark k, and failed with `failed` when it is the
    last marked; one without an end mark ran until `now` (it raised what the pipeline did not see:
    cancelled). Compiled in `_otlp_stages.c` (`stage_spans`) where setup.py built it."""
    last = len(marks) - 1
    start = marks[0]
    for k, stage in enumerate(stages, 1):
        end, error = (marks[k], failed if k == last else None) if k <= last else (now, None)
        attrs: Attributes = NO_ATTRIBUTES if error is None else (("error.type",), (error,))
        spans.append((stage.name, server ^ k, server, INTERNAL, attrs, start, end, error))
        start = end


stage_spans: Callable[[list[Span], int, Sequence[Any], list[int], str | None, int], None] = python_stage_spans
try:
    from gateway.telemetry._otlp import stage_spans
except ImportError:  # built without a C compiler
    pass


_operations: dict[str, str] = {}  # gen_ai.operation.name by path (the routes' paths: a few)


def _operation(path: str) -> str:
    if len(_operations) >= 256:
        _operations.clear()
    op = _operations[path] = operation_name(path)
    return op


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    elif not isinstance(value, str):
        import orjson

        value = orjson.dumps(value).decode()
    return str(value)[:_CONTENT_LIMIT]
