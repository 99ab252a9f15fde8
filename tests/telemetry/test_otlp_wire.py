"""The gateway's own OTLP encoding against the SDK's: the same spans, decoded with opentelemetry-proto,
are equal messages; and the export queue's bounds, batches and drop counting, sending through the SDK
exporter's HTTP client to a real OTLP/HTTP receiver."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from edgecore.otel import ExportSettings, OtlpHttpSender
from gateway.config.schema import RouteConfig
from gateway.context import Answer, RequestContext, Usage
from gateway.errors import GatewayError
from gateway.telemetry import otlp_wire
from gateway.telemetry.config import TelemetryConfig
from gateway.telemetry.export import SpanExport
from gateway.telemetry.otlp_wire import BatchHead
from gateway.telemetry.tracing import SCOPE, RequestTrace, Tracing
from testkit.otlp_receiver import OtlpReceiver

SAMPLED = TraceFlags(TraceFlags.SAMPLED)
# Every value type the gateway's spans carry, and the edges of each.
ATTRIBUTES: dict[str, Any] = {
    "str": "chat", "empty": "", "unicode": "modèle → ☃", "long": "x" * 5000, "int": 5, "zero": 0,
    "negative": -3, "int64.max": (1 << 63) - 1, "int64.min": -(1 << 63), "float": 0.7, "float.zero": 0.0,
    "float.negative": -1e-300, "true": True, "false": False, "list": ["stop", "length"], "list.empty": [],
    "tuple": ("a",), "medium": "m" * 120, "k" * 130: 7, "k" * 131: "short",
}


class _Stage:
    def __init__(self, name: str, fails: bool = False) -> None:
        self.name = name
        self.fails = fails

    async def on_request(self, ctx: Any) -> None:
        if self.fails:
            raise GatewayError(429, "limited", "rate_limited")


class _Answer:
    status = 500


def _run(coro: Any) -> Any:
    """Run a coroutine that never suspends (the fakes here don't) to its end."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    raise AssertionError("suspended")


def _request(tracing: Tracing, remote: SpanContext | None, fail_stage: bool = False,
             all_values: bool = False) -> RequestTrace:
    """One request through the RequestTrace hooks, as the pipeline and the forwarder call them
    (`all_values`: and a cache stage that missed, and a span with every value type under the inference
    span)."""
    ctx = RequestContext("req-1", "POST", "/v1/chat/completions", {}, "10.0.0.7")
    ctx.route = RouteConfig(name="r", paths=("/v1/chat/completions",))
    ctx.model, ctx.subject, ctx.pool = "tiny", "partner-7", SimpleNamespace(name="p")  # type: ignore[assignment]
    ctx.body_json = {"model": "tiny", "max_tokens": 5, "temperature": 1, "top_p": 0.5, "seed": 7.0, "stream": True}
    ctx.stream = True
    ctx.answer = Answer(model="tiny-0", id="cmpl-1", finish_reasons=["stop", "length"])
    request = RequestTrace(tracing, 0x0AF7651916CD43DD8448EB211C80319C if remote is None else remote.trace_id,
                           remote)
    request.mark()  # the pipeline's stages begin
    ctx.ran.append(_Stage("jwt_auth"))  # type: ignore[arg-type]
    request.mark()
    ctx.ran.append(_Stage("wasm_routing"))  # type: ignore[arg-type]
    _run(request.plugin("router", "v1 sha256:ab", _Stage("plugin").on_request(ctx)))  # inside that stage
    request.mark()
    if all_values:
        ctx.ran.append(_Stage("cache"))  # type: ignore[arg-type]
        request.mark()
        ctx.cache_status = "MISS"
    if fail_stage:
        ctx.ran.append(_Stage("ratelimit", fails=True))  # type: ignore[arg-type]
        request.mark("rate_limited")
    request.begin_inference(ctx)
    assert request.inference is not None
    if all_values:
        request.spans.append(("values", request.server_id ^ 0xFFFF, request.inference[1], otlp_wire.INTERNAL,
                              (tuple(ATTRIBUTES), tuple(ATTRIBUTES.values())), 1, 2, None))
    headers: dict[str, str] = {}
    request.end_attempt(request.begin_attempt(headers), "http://b:1", 1, None, _Answer.status, None)
    request.end_attempt(request.begin_attempt(headers), "http://b:2", 2, "upstream_error", _Answer.status, None)
    assert headers["traceparent"].startswith(f"00-{request.trace_id:032x}-")
    ctx.answer.first_chunk_s = 0.25
    ctx.status, ctx.error, ctx.usage = 502, "upstream_error", Usage(11, 3, 2)
    request.finish(ctx)
    return request


def _sdk_request(tracing: Tracing, request: RequestTrace) -> ExportTraceServiceRequest:
    """What the SDK's exporter sends for the same spans (as `Tracing.export` made them before)."""
    assert request.root is not None
    spans = [request.root, *request.spans]
    contexts = {s[1]: SpanContext(request.trace_id, s[1], False, SAMPLED) for s in spans}
    if request.remote_parent is not None:
        contexts[request.remote_parent.span_id] = request.remote_parent
    readable = [ReadableSpan(name=name, context=contexts[span_id], parent=contexts.get(parent), resource=tracing.resource,
                             attributes={k: v for k, v in zip(*attrs, strict=True) if v is not None}, kind=SpanKind(kind), start_time=start, end_time=end,
                             status=Status(StatusCode.UNSET) if error is None else Status(StatusCode.ERROR, error),
                             instrumentation_scope=InstrumentationScope(SCOPE))
                for name, span_id, parent, kind, attrs, start, end, error in spans]
    return encode_spans(readable)


class Captured:
    def __init__(self) -> None:
        self.chunks: list[tuple[int, bytes]] = []

    def put(self, spans: int, data: bytes) -> None:
        self.chunks.append((spans, data))

    def shutdown(self) -> None:
        pass


@pytest.fixture
def tracing() -> Any:
    settings = ExportSettings(endpoint="http://127.0.0.1:9/v1/traces", service_name="gw-wire")
    t = Tracing(TelemetryConfig(export=settings))
    t.queue.shutdown()
    t.queue = Captured()  # type: ignore[assignment]
    return t


@pytest.mark.parametrize("remote", [None, SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, True,
                                                      SAMPLED)], ids=["new-trace", "remote-parent"])
def test_encoded_request_equals_the_sdk_encoders_message(tracing: Any, remote: SpanContext | None) -> None:
    otlp_wire._attributes.clear()  # encoded first as misses, then again from the tables
    request = _request(tracing, remote, fail_stage=True, all_values=True)
    [(count, data)] = tracing.queue.chunks
    assert request.root is not None and count == 10
    assert otlp_wire.encode_spans(request.trace_id, request.root, request.spans, remote is not None) == data
    ours = ExportTraceServiceRequest.FromString(BatchHead(tracing.resource.attributes, SCOPE).request([data], len(data)))
    sdk = _sdk_request(tracing, request)
    assert ours == sdk
    assert ours.SerializeToString(deterministic=True) == sdk.SerializeToString(deterministic=True)
    decoded = {s.name: s for s in ours.resource_spans[0].scope_spans[0].spans}
    inference = {a.key: a.value for a in decoded["chat tiny"].attributes}
    assert {a.key for a in decoded["values"].attributes} == set(ATTRIBUTES)
    assert {"gen_ai.request.temperature", "gen_ai.response.finish_reasons", "edgegw.stream", "error.type",
            "gen_ai.usage.cache_read.input_tokens", "gen_ai.server.time_to_first_token"} <= set(inference)
    assert "gen_ai.input.messages" not in inference and "gen_ai.output.messages" not in inference  # not opted in
    assert inference["gen_ai.request.temperature"].double_value == 1.0  # an int in the request: a double
    assert inference["gen_ai.request.seed"].int_value == 7  # a whole float: an int
    assert [v.string_value for v in inference["gen_ai.response.finish_reasons"].array_value.values] == ["stop", "length"]
    assert decoded["ratelimit"].status.code == StatusCode.ERROR.value
    server = decoded["POST /v1/chat/completions"]
    assert server.flags == (0x300 if remote else 0x100)
    assert server.parent_span_id == (remote.span_id.to_bytes(8, "big") if remote else b"")
    assert decoded["chat tiny"].parent_span_id == server.span_id
    assert decoded["upstream attempt 2"].parent_span_id == decoded["chat tiny"].span_id
    assert decoded["plugin router"].parent_span_id == decoded["wasm_routing"].span_id  # its phase's stage
    assert decoded["jwt_auth"].parent_span_id == server.span_id
    assert decoded["ratelimit"].end_time_unix_nano >= decoded["wasm_routing"].end_time_unix_nano
    assert len({s.span_id for s in decoded.values()}) == len(decoded) == 10
    assert [(a.key, a.value.string_value) for a in decoded["cache"].attributes] == [("edgegw.cache.status", "MISS")]


def test_batches_concatenate_requests_into_one_message(tracing: Any) -> None:
    head = BatchHead(tracing.resource.attributes, SCOPE)
    requests = [_request(tracing, None) for _ in range(3)]
    chunks = [data for _, data in tracing.queue.chunks]
    batch = ExportTraceServiceRequest.FromString(head.request(chunks, sum(map(len, chunks))))
    assert len(batch.resource_spans) == 1 and len(batch.resource_spans[0].scope_spans) == 1
    assert batch.resource_spans[0].scope_spans[0].scope.name == SCOPE
    ids = [s.span_id for s in batch.resource_spans[0].scope_spans[0].spans]
    assert ids == [s[1].to_bytes(8, "big") for r in requests for s in [r.root, *r.spans] if s is not None]


def _export(receiver_url: str, send: Any = None, **settings: Any) -> tuple[SpanExport, list[tuple[str, int]]]:
    base = ExportSettings(endpoint=receiver_url + "/v1/traces", service_name="gw-wire", schedule_delay_ms=50)
    config = replace(base, **settings)
    dropped: list[tuple[str, int]] = []
    sender = OtlpHttpSender(config)
    return SpanExport(config, BatchHead({"service.name": "gw-wire"}, SCOPE), send or sender.send,
                      lambda reason, n: dropped.append((reason, n)), sender.shutdown), dropped


def _chunk(tracing: Any) -> tuple[int, bytes]:
    """One request's encoded spans: (how many, bytes)."""
    tracing.queue.chunks.clear()
    _request(tracing, None)
    return tracing.queue.chunks[0]  # type: ignore[no-any-return]


def test_export_sends_batches_through_the_sdk_http_client(tracing: Any) -> None:
    receiver = OtlpReceiver().start()
    export, dropped = _export(receiver.url, max_batch_spans=12)
    try:
        n, data = _chunk(tracing)
        for _ in range(20):
            export.put(n, data)
        assert export.flush(10)
        assert n == 7 and len(receiver.spans) == 140 and dropped == []
        assert receiver.requests == 20  # a batch of 12 has room for one seven-span request
        assert {s.service for s in receiver.spans} == {"gw-wire"}
    finally:
        export.shutdown()
        receiver.stop()


def test_a_full_queue_drops_the_oldest_and_counts_them_never_blocking(tracing: Any) -> None:
    release = threading.Event()
    sent: list[bytes] = []

    def stuck(data: bytes) -> bool:  # a collector that does not answer until released
        release.wait(10)
        sent.append(data)
        return True

    export, dropped = _export("http://127.0.0.1:9", send=stuck, max_queue_spans=20, max_batch_spans=6)
    try:
        n, data = _chunk(tracing)
        export.put(n, data)
        deadline = time.monotonic() + 5
        while export.queued and time.monotonic() < deadline:  # the first batch is in flight, stuck
            time.sleep(0.01)
        started = time.perf_counter()
        for _ in range(10):
            export.put(n, data)
        assert time.perf_counter() - started < 0.05
        assert export.queued == 14 and sum(k for _, k in dropped) == 56  # room for two seven-span requests
        assert {reason for reason, _ in dropped} == {"queue_full"}
        release.set()
        assert export.flush(10)
        assert len(sent) == 3  # the stuck batch and the two newest requests
    finally:
        release.set()
        export.shutdown()


def test_refused_batches_are_counted_and_shutdown_is_bounded(tracing: Any) -> None:
    receiver = OtlpReceiver(mode="error").start()
    export, dropped = _export(receiver.url, timeout_s=0.5)
    try:
        for _ in range(4):
            export.put(*_chunk(tracing))
        assert export.flush(10)
        assert sum(n for reason, n in dropped if reason == "export_failed") == 28
    finally:
        receiver.stop()
    for _ in range(4):  # a collector gone at shutdown: what is queued is counted, shutdown returns
        export.put(*_chunk(tracing))
    started = time.perf_counter()
    export.shutdown()
    assert time.perf_counter() - started < 3
    assert sum(n for reason, n in dropped if reason == "export_failed") == 56


def test_shutdown_sends_what_is_queued(tracing: Any) -> None:
    receiver = OtlpReceiver().start()
    export, dropped = _export(receiver.url, schedule_delay_ms=60_000)
    try:
        export.put(*_chunk(tracing))
        export.shutdown()
        assert len(receiver.spans) == 7 and dropped == []
    finally:
        receiver.stop()


class _Str(str):
    pass


# The compiled encoder alone (None: a request it hands back to the Python one), where setup.py built it.
_compiled: Any = None
try:
    from gateway.telemetry._otlp import encode_spans as _compiled
except ImportError:  # built without a C compiler
    pass


# Values the compiled encoder hands back to the Python one (which encodes or leaves out and logs them).
_HANDED_BACK: list[Any] = [{"a": 1}, 1 << 64, _Str("sub"), "lone \ud800 surrogate", [1, {"x": "y"}], object()]


def _random_value(rng: Any, depth: int = 0) -> Any:
    kind = rng.randrange(9 if depth == 0 else 8)
    if kind == 0:
        return rng.choice(["", "a", "modèle ☃", "x" * rng.randrange(300), "\x00\x7f"])
    if kind == 1:
        return rng.choice([0, 1, 127, 128, -1, 1 << 40, (1 << 63) - 1, -(1 << 63)])
    if kind == 2:
        return rng.choice([0.0, -2.5, 1e300, float("inf"), 0.85])
    if kind == 3:
        return rng.random() < 0.5
    if kind == 4:
        return None
    if kind == 5:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(20)))
    if kind in (6, 7):
        items = [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))] if depth < 2 else []
        return items if kind == 6 else tuple(items)
    return rng.choice(_HANDED_BACK)


def _random_span(rng: Any, root: bool) -> otlp_wire.Span:
    values = [_random_value(rng) for _ in range(rng.randrange(12))]
    # A key keeps one value type (the Python encoder's table relies on it: True == 1)
    pairs = {rng.choice(["k", "gen_ai.usage.input_tokens", "é" * rng.randrange(1, 70)]) + type(v).__name__: v
             for v in values}
    # keys and values as tuples (the gateway's), now and then as lists (handed back: encoded in Python)
    container: Any = list if rng.random() < 0.05 else tuple
    attrs = (container(pairs), container(pairs.values()))
    return (rng.choice(["jwt_auth", "chat tiny", "n" * 200, "ünï"]), rng.randrange(1, 1 << 64),
            0 if root and rng.random() < 0.5 else rng.randrange(1, 1 << 64), rng.randrange(5), attrs,
            rng.randrange(1 << 63), rng.randrange(1 << 63), rng.choice([None, "rate_limited", "", "é" * 130]))


def test_the_compiled_encoder_is_built_where_a_compiler_is() -> None:
    import shutil

    from gateway.telemetry import tracing

    if shutil.which("cc") or shutil.which("gcc"):
        assert _compiled is not None, "setup.py builds gateway/telemetry/_otlp.c: reinstall (make install)"
        assert otlp_wire.encode_spans is not otlp_wire.python_encode_spans
        assert tracing.stage_spans is not tracing.python_stage_spans


def test_compiled_and_python_stage_spans_agree() -> None:
    """Random pipelines (stages that ran, marks taken, a failure or none): the same spans, appended after
    what the list held."""
    import random

    from gateway.telemetry import tracing

    rng = random.Random(11)
    for _ in range(500):
        stages = [_Stage(rng.choice(["jwt_auth", "cache", "ünï", ""])) for _ in range(rng.randrange(8))]
        marks = sorted(rng.randrange(1 << 63) for _ in range(rng.randrange(1, len(stages) + 2)))
        args = (rng.randrange(1 << 32, 1 << 64), stages, marks, rng.choice([None, "rate_limited"]), 1 << 62)
        compiled: list[Any] = [("earlier",)]
        python: list[Any] = [("earlier",)]
        tracing.stage_spans(compiled, *args)
        tracing.python_stage_spans(python, *args)
        assert compiled == python and len(compiled) == len(stages) + 1
    with pytest.raises((ValueError, IndexError)):
        tracing.stage_spans([], 1 << 40, [_Stage("s")], [], None, 1)


def test_compiled_and_python_encoders_write_the_same_bytes(caplog: Any) -> None:
    """Random spans of every value type (and the values the compiled encoder hands back): both encoders
    write the same bytes, which decode as the spans' OTLP messages."""
    import random

    rng = random.Random(20261206)
    handed_back = 0
    for _ in range(400):
        trace_id, remote = rng.randrange(1, 1 << 128), rng.random() < 0.3
        root, children = _random_span(rng, True), [_random_span(rng, False) for _ in range(rng.randrange(40))]
        python = otlp_wire.python_encode_spans(trace_id, root, children, remote)
        assert otlp_wire.encode_spans(trace_id, root, children, remote) == python
        if _compiled is not None and _compiled(trace_id, root, children, remote) is None:
            handed_back += 1
        spans = ExportTraceServiceRequest.FromString(
            BatchHead({}, SCOPE).request([python], len(python))).resource_spans[0].scope_spans[0].spans
        assert [s.span_id for s in spans] == [s[1].to_bytes(8, "big") for s in (root, *children)]
        assert all(s.trace_id == trace_id.to_bytes(16, "big") for s in spans)
    assert _compiled is None or 0 < handed_back < 400


def test_malformed_spans_raise_rather_than_encode() -> None:
    import struct

    span: Any = ("s", 1, 0, 0, ((), ()), 1, 2, None)
    for bad in [("s", -1, 0, 0, ((), ()), 1, 2, None), ("s", 1, 0, 9, ((), ()), 1, 2, None), ("s", 1, 0),
                ("s", 1, 0, 0, (("a", "b"), (1,)), 1, 2, None)]:  # (the last: a key without its value)
        with pytest.raises((ValueError, TypeError, OverflowError, IndexError, struct.error)):
            otlp_wire.encode_spans(1, bad, [], False)
    with pytest.raises(OverflowError):
        otlp_wire.encode_spans(1 << 128, span, [], False)


def test_traceparent_compiled_and_python_agree() -> None:
    import random

    from gateway.telemetry import propagation

    rng = random.Random(7)
    for _ in range(2000):
        args = (rng.getrandbits(rng.choice([1, 64, 128])), rng.getrandbits(rng.choice([1, 64])), rng.random() < 0.5)
        value = propagation.traceparent(*args)
        assert value == propagation._traceparent(*args) and len(value) == 55
    assert propagation.traceparent((1 << 127) | 0xAB, 0xF00D, True) == \
        "00-800000000000000000000000000000ab-000000000000f00d-01"
