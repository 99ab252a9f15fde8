"""The proxy's per-request step for MessagePack bodies and media parts, run once the route is known.

It checks media parts against the route's limits and the pool's capabilities, turns a MessagePack
body into canonical JSON (`ctx.body`, content type JSON), and enforces the body limit: the text of a
request may take `server.max_body_bytes`, its media as much again as the route's `media.max_bytes`
needs in base64, so the limit means the same for JSON and MessagePack clients. Plain JSON requests
without content-part arrays do not get here (`has_content_parts` is the proxy's test).
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

import orjson

from gateway.config.schema import GatewayConfig
from gateway.context import RequestContext
from gateway.errors import GatewayError, bad_request
from gateway.ingress.bodies import accepts_msgpack, check_json_compatible, encode_response
from gateway.ingress.routing import RouteTable
from gateway.media.config import DEFAULT_LIMITS, MediaLimits, accepts, modalities, route_limits
from gateway.media.parts import MediaFound, scan

CHAT_PATH = "/v1/chat/completions"


def has_content_parts(messages: list[Any]) -> bool:
    """Whether a (validated) chat request has a message whose content is an array of parts: only
    those can hold media. Cheaper than searching the raw body, and blind to how the JSON spelled it."""
    for message in messages:
        if type(message.get("content")) is list:
            return True
    return False


def base64_size(n: int) -> int:
    return (n + 2) // 3 * 4


class MediaGate:
    def __init__(self, config: GatewayConfig, table: RouteTable, max_body: int) -> None:
        self.table = table
        self.pools = {p.name: p for p in config.pools}
        self.text_max_body = max_body
        media_pools = any(p.image_models or p.audio_models for p in config.pools)
        largest = max((route_limits(r).max_bytes for r in config.routes), default=0)
        # The most any request may be on the wire: read that much, then hold each part to its limit.
        self.read_max_body = max_body + (base64_size(largest) if media_pools else 0)

    def capabilities(self, model: str) -> list[str]:
        """The input modalities `model` accepts, from the first pool serving it (`/v1/models`)."""
        for pool in self.pools.values():
            if any(fnmatchcase(model, m) for m in pool.models):
                return modalities(pool.image_models, pool.audio_models, model)
        return ["text"]

    def prepare(self, ctx: RequestContext, body: dict[str, Any], packed: bool) -> None:
        """Check (and for MessagePack, convert) the request's media; raise GatewayError on a refusal."""
        found = None
        if ctx.path == CHAT_PATH:
            limits: MediaLimits = route_limits(ctx.route) if ctx.route is not None else DEFAULT_LIMITS
            found = scan(body["messages"], limits)
        if packed:
            check_json_compatible(body)
        wire = found.wire_bytes if found is not None else 0
        if len(ctx.body) - wire > self.text_max_body:
            message = (f"request body exceeds {self.text_max_body} bytes" if not wire else
                       f"request body exceeds {self.text_max_body} bytes besides its media")
            raise GatewayError(413, message, "body_too_large")
        if found is not None and found.modalities:
            self._check_model(ctx, found)
        if packed:
            ctx.body = orjson.dumps(body)
            ctx.headers["content-type"] = "application/json"

    def _check_model(self, ctx: RequestContext, found: MediaFound) -> None:
        """Refuse media the model's pool does not declare it accepts, before anything is forwarded."""
        if ctx.route is None:
            return
        name = self.table.pool_for_model(ctx.route, ctx.model)
        pool = self.pools.get(name) if name else None
        if pool is None:
            return  # no pool serves the model: pool selection answers 404
        allowed = {"image": pool.image_models, "audio": pool.audio_models}
        text_only = not (accepts(pool.image_models, ctx.model) or accepts(pool.audio_models, ctx.model))
        for modality, where in found.modalities.items():
            if accepts(allowed[modality], ctx.model):
                continue
            message = (f"model {ctx.model} is text-only: it does not accept {modality} input" if text_only
                       else f"model {ctx.model} does not accept {modality} input")
            raise bad_request(message, param=where, code="unsupported_modality")


def negotiate_reply(ctx: RequestContext) -> None:
    """The client's Accept mentions MessagePack: remember whether it prefers it, and ask the backend
    for JSON (the gateway reads usage from it and the cache stores it; it encodes at the end)."""
    if accepts_msgpack(ctx.headers.get("accept")):
        ctx.reply_msgpack = True
    ctx.headers["accept"] = "application/json"


def encode_reply(ctx: RequestContext, headers: dict[str, str], body: bytes | None) -> bytes | None:
    """A whole JSON answer (or error) as MessagePack when the client prefers it; else the body as is.
    `headers` is the reply's, its content type updated to match."""
    if body is None or not ctx.reply_msgpack and not accepts_msgpack(ctx.headers.get("accept")):
        return body
    if not headers.get("content-type", "application/json").startswith("application/json"):
        return body
    packed = encode_response(body)
    if packed is None:
        return body
    headers["content-type"] = "application/msgpack"
    return packed
