"""The per-request state that every pipeline stage reads and writes."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from gateway.cache.stage import Pending
    from gateway.config.schema import RouteConfig
    from gateway.errors import GatewayError
    from gateway.pipeline.stage import Stage
    from gateway.ratelimit.stage import Held
    from gateway.redis.piggyback import Piggyback
    from gateway.telemetry.tracing import RequestTrace
    from gateway.upstream.forward import StreamTally
    from gateway.upstream.pool import Endpoint, Pool
    from wasm_plugins.plugin import Plugin
    from wasm_plugins.version import PluginVersion


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of the prompt, served from the backend's prefix cache (when it says)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True, init=False)
class Answer:
    """What the answer said about itself, read only while telemetry is on (`gateway.telemetry`)."""

    model: str | None
    id: str | None
    finish_reasons: list[str]
    first_chunk_s: float | None  # a stream's first upstream chunk, seconds after the request began
    details: bool  # read the model, id and finish reasons (for a traced request's span); else only the time

    # Written out: made on every request while telemetry is on, and the generated one (keyword call,
    # default factory) costs twice the instructions.
    def __init__(self, details: bool = True, model: str | None = None, id: str | None = None,  # noqa: A002
                 finish_reasons: list[str] | None = None, first_chunk_s: float | None = None) -> None:
        self.details = details
        self.model = model
        self.id = id
        self.finish_reasons = [] if finish_reasons is None else finish_reasons
        self.first_chunk_s = first_chunk_s


@dataclass(slots=True)
class RequestContext:
    """Everything known about one request as it walks the pipeline.

    Stages communicate only through this object: auth fills `claims`/`subject`, routing fills
    `pool`, preprocessing may replace `body_json`, the forwarder fills `endpoint`, `status`,
    `usage` and (when `collect_response` is set) `response_body`. The framework's own bookkeeping
    (which stages ran, whether the client left) has typed fields too, as has each feature's own state.
    """

    request_id: str
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names; the last value wins
    client_ip: str
    body: bytes = b""
    body_json: dict[str, Any] | None = None
    started: float = field(default_factory=time.perf_counter)
    query: str = ""  # the raw query string, without '?'
    upstream_path: str | None = None  # set by a plugin that changed `:path`: forwarded instead
    upstream_host: str | None = None  # set by a plugin that changed `:authority`: the upstream Host

    route: RouteConfig | None = None
    # When no route serves the requested model: the 404 the proxy held back until the caller has
    # authenticated (`route` is then the path's auth gate); the auth stage raises it.
    unrouted: GatewayError | None = None
    model: str | None = None
    stream: bool = False

    # identity (JWT or an auth plugin)
    issuer: str | None = None  # the verified token's issuer (config name): callers are scoped by it
    subject: str | None = None
    tenant: str | None = None
    tier: str | None = None
    api_key: str | None = None
    claims: dict[str, Any] | None = None
    scopes: frozenset[str] = frozenset()
    models_allowed: frozenset[str] | None = None  # the token's models; None: any (a fallback is checked too)

    # routing and upstream
    pool: Pool | None = None
    pool_override: str | None = None  # set by a routing plugin
    endpoint: Endpoint | None = None
    attempts: int = 0
    upstream_s: float = 0.0  # time spent waiting on the upstream, excluded from overhead
    ran: list[Stage] = field(default_factory=list)  # stages whose on_request ran, in order (the pipeline's)

    # response
    status: int = 0
    usage: Usage | None = None
    cache_status: str | None = None
    collect_response: bool = False  # set by a stage that needs the full body (e.g. the cache)
    response_body: bytes | None = None  # full body, or the assembled SSE stream when collected
    response_headers: dict[str, str] = field(default_factory=dict)  # extra headers for the client
    error: str | None = None  # error code when the request failed
    body_dirty: bool = False  # body_json changed; the forwarder re-serialises it
    upstream_content_type: str = ""  # of a non-streamed answer collected for a stage (`collect_response`)
    reply_msgpack: bool = False  # the client's Accept prefers MessagePack (`gateway.ingress.media`)
    streamed: StreamTally | None = None  # what a streamed answer delivered so far (the forwarder's)
    served_model: str | None = None  # public name written into the answer (an alias, or a fallback served it)
    fallback_from: str | None = None  # the model asked for, when a fallback (`ctx.model`) served it

    # the client connection
    client_gone: bool = False  # it disconnected before the response was complete
    sent: bool = False  # the response's last byte is being sent: a disconnect now is the normal end

    # telemetry (`gateway.telemetry`): None while it is off
    answer: Answer | None = None
    trace: RequestTrace | None = None  # the spans of a sampled request
    trace_context: Any = None  # an unsampled request's span context, passed on to the backend

    # features' own per-request state: each field is written and read by one feature (or the plugin host)
    limits_held: Held | None = None  # gateway.ratelimit: the slots and tokens this request holds
    piggyback: Piggyback | None = None  # gateway.redis: the limiter's round trips, carrying the cache's work
    cache_pending: Pending | None = None  # gateway.cache: what to store once the answer is complete
    plugin_path: str | None = None  # wasm_plugins: `:path` as a plugin left it, when one changed it
    plugin_judged: list[tuple[Plugin, PluginVersion, str]] | None = None  # wasm_plugins: outcomes to judge

    def overhead_ms(self) -> float:
        return max(0.0, (time.perf_counter() - self.started - self.upstream_s) * 1000.0)

    def set_body_json(self, value: dict[str, Any]) -> None:
        """Replace the request JSON (preprocessing); the forwarder sends the new body."""
        self.body_json = value
        self.body_dirty = True


class RequestObserver(Protocol):
    """Watches every inference request (`gateway.telemetry`): `begin` as it arrives, `end` after its
    last byte (or its failure), once each. A feature whose state is one says `observes=True`."""

    def begin(self, ctx: RequestContext) -> None: ...

    def end(self, ctx: RequestContext) -> None: ...
