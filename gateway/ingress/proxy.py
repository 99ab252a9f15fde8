"""The ASGI endpoint for inference requests: parse, run the pipeline, send, then complete and log.

Written against raw ASGI rather than Starlette's Request/Response: this is the hot path.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import Receive, Scope, Send

from gateway import metrics
from gateway.accesslog import AccessLog
from gateway.context import RequestContext, RequestObserver
from gateway.errors import GatewayError, bad_request, internal_error_body
from gateway.ingress.activity import activity
from gateway.ingress.api import CHAT, GENERATE, SPECS, check_output_cap, generate_to_completions, validate
from gateway.ingress.bodies import decode_request, is_msgpack_type
from gateway.ingress.headers import single_authorization
from gateway.ingress.jsonkeys import reject_duplicate_keys
from gateway.ingress.media import MediaGate, encode_reply, has_content_parts, negotiate_reply
from gateway.ingress.routing import RouteTable
from gateway.reply import Reply

if TYPE_CHECKING:
    from gateway.pipeline.pipeline import Pipeline

log = logging.getLogger("edgegw.proxy")

_SSE_HEADERS = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no")]


class ProxyEndpoint:
    """One instance serves every inference path (`gateway.ingress.api.SPECS`)."""

    def __init__(self, table: RouteTable, pipeline: Pipeline, access_log: AccessLog, max_body: int,
                 trust_forwarded_for: bool = False, observers: tuple[RequestObserver, ...] = ()) -> None:
        self.table = table
        # Told each request's begin and end, in order: the features that observe (gateway.telemetry:
        # traces, GenAI metrics, usage), then a policy canary's judge while one runs (gateway.policy.canary).
        self.observers = observers
        self.pipeline = pipeline
        self.access_log = access_log
        # MessagePack and media parts (gateway.ingress.media); it raises the read limit by the media's base64
        self.media = MediaGate(table.config, table, max_body)
        self.max_body = self.media.read_max_body
        self.text_max_body = max_body
        self.trust_forwarded_for = trust_forwarded_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        ctx = self._context(scope)
        observers = self.observers
        for observer in observers:
            observer.begin(ctx)
        metrics.in_flight.inc()
        reply: Reply | None = None
        watcher = _DisconnectWatcher(receive, ctx)
        try:
            try:
                if scope["method"] != "POST":
                    raise GatewayError(405, f"method {scope['method']} not allowed on {ctx.path}; use POST",
                                       "method_not_allowed", headers={"allow": "POST"})
                if len(ctx.headers) != len(scope["headers"]):  # some header repeated (rare)
                    single_authorization(scope["headers"])
                ctx.body = await self._read_body(ctx, receive)
                self._parse(ctx)
                watcher.arm()
                reply = await self.pipeline.process(ctx)
            except GatewayError as exc:
                ctx.status = exc.status
                ctx.error = exc.code
                reply = Reply.from_error(exc)
                reply.headers.update(ctx.response_headers)
            except Exception:
                log.exception("unhandled error on %s (request %s)", ctx.path, ctx.request_id)
                reply = _internal_error(ctx)
            await self._send(ctx, reply, send)
        except asyncio.CancelledError:
            if not ctx.client_gone:
                raise
            ctx.status, ctx.error = 499, "client_disconnected"
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        finally:
            watcher.disarm()
            metrics.in_flight.dec()
            await self.pipeline.complete(ctx)
            self._record(ctx)
            for observer in observers:
                observer.end(ctx)

    def _context(self, scope: Scope) -> RequestContext:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.get("x-request-id") or uuid.uuid4().hex
        if len(request_id) > 128 or not request_id.isprintable():
            request_id = uuid.uuid4().hex
        client = scope.get("client") or ("", 0)
        client_ip = client[0]
        if self.trust_forwarded_for and "x-forwarded-for" in headers:
            client_ip = headers["x-forwarded-for"].split(",")[0].strip()
        return RequestContext(request_id=request_id, method=scope["method"], path=scope["path"],
                              headers=headers, client_ip=client_ip,
                              query=scope.get("query_string", b"").decode("latin-1"))

    async def _read_body(self, ctx: RequestContext, receive: Receive) -> bytes:
        declared = ctx.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise GatewayError(413, f"request body exceeds {self.max_body} bytes", "body_too_large")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                ctx.client_gone = True
                raise asyncio.CancelledError
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise GatewayError(413, f"request body exceeds {self.max_body} bytes", "body_too_large")
            chunks.append(chunk)
            if not message.get("more_body"):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _parse(self, ctx: RequestContext) -> None:
        spec = SPECS[ctx.path]
        if not ctx.body:
            raise bad_request("request body is empty; expected a JSON object", code="invalid_json")
        content_type = ctx.headers.get("content-type")  # MessagePack? (gateway.ingress.bodies; JSON: one test)
        packed = content_type is not None and "json" not in content_type and is_msgpack_type(content_type)
        if packed:
            body = decode_request(ctx.body)
        else:
            try:
                body = orjson.loads(ctx.body)
            except orjson.JSONDecodeError as exc:
                raise bad_request(f"request body is not valid JSON: {exc.args[0]}", code="invalid_json") from None
            reject_duplicate_keys(ctx.body, body)
        if "msgpack" in ctx.headers.get("accept", ""):  # a MessagePack answer? (gateway.ingress.media)
            negotiate_reply(ctx)
        ctx.body_json = validate(spec, body)
        ctx.model = body.get("model")
        ctx.stream = bool(body.get("stream"))
        try:
            ctx.route = self.table.match(ctx.path, ctx.model)
        except GatewayError as exc:
            # Answer "no such model" only to an authenticated caller: the auth stage raises it.
            gate = self.table.auth_gate(ctx.path)
            if gate is None:
                raise
            ctx.route = gate
            ctx.unrouted = exc
            return
        check_output_cap(body, ctx.route.max_tokens_limit)
        if packed or len(ctx.body) > self.text_max_body or (spec is CHAT and has_content_parts(body["messages"])):
            self.media.prepare(ctx, body, packed)  # limits, capabilities, canonical JSON
        if spec is GENERATE:
            ctx.model = ctx.model or self.table.default_model(ctx.route)
            ctx.set_body_json(generate_to_completions(body, ctx.model))

    async def _send(self, ctx: RequestContext, reply: Reply, send: Send) -> None:
        if reply.stream is None and (ctx.reply_msgpack or "msgpack" in ctx.headers.get("accept", "")):
            reply.body = encode_reply(ctx, reply.headers, reply.body)
        if reply.stream is not None:
            headers = list(_SSE_HEADERS)
        else:
            headers = [(b"content-type", reply.headers.pop("content-type", "application/json").encode()),
                       (b"content-length", str(len(reply.body or b"")).encode())]
        for k, v in reply.headers.items():
            if k != "content-type":
                headers.append((k.encode("latin-1"), v.encode("latin-1")))
        headers.append((b"x-request-id", ctx.request_id.encode()))
        headers.append((b"x-edgegw-overhead-ms", f"{ctx.overhead_ms():.3f}".encode()))
        ctx.status = reply.status
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        if reply.stream is not None:
            async for chunk in reply.stream:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        # From here on a disconnect is the normal end of the exchange, not a client going away.
        ctx.sent = True
        await send({"type": "http.response.body", "body": reply.body or b""})

    def _record(self, ctx: RequestContext) -> None:
        route = ctx.route.name if ctx.route else "none"
        pool = ctx.pool.name if ctx.pool else "none"
        elapsed = time.perf_counter() - ctx.started
        metrics.requests_by.get(route, pool, str(ctx.status)).inc()
        metrics.request_seconds_by.get(route).observe(elapsed)
        metrics.overhead_seconds_by.get(route).observe(ctx.overhead_ms() / 1000.0)
        self.access_log.write(ctx, route, pool, elapsed)
        activity.record(ctx, route, pool)


def _internal_error(ctx: RequestContext) -> Reply:
    ctx.status, ctx.error = 500, "internal_error"
    return Reply(500, {"content-type": "application/json"}, body=orjson.dumps(internal_error_body()))


class _DisconnectWatcher:
    """Cancels the request's task when the client goes away, which closes the upstream request too.

    The watching task starts only once a request has been in flight for a while: most requests
    finish sooner, and for them a task per request would be pure overhead.
    """

    DELAY_S = 0.05

    def __init__(self, receive: Receive, ctx: RequestContext) -> None:
        self.receive = receive
        self.ctx = ctx
        self.task: asyncio.Task[Any] | None = None
        self.watch: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        self.task = asyncio.current_task()
        self.timer = asyncio.get_running_loop().call_later(self.DELAY_S, self._start)

    def _start(self) -> None:
        self.watch = asyncio.get_running_loop().create_task(self._run())

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.watch is not None:
            self.watch.cancel()

    async def _run(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                if self.ctx.sent:
                    return
                self.ctx.client_gone = True
                if self.task is not None:
                    self.task.cancel()
                return
