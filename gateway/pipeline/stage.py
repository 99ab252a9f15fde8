"""The one interface every pipeline stage implements (like Kong's plugin phases)."""

from __future__ import annotations

from gateway.context import RequestContext
from gateway.reply import Reply


class Stage:
    """A step of the request pipeline.

    `on_request` runs in pipeline order before the request is forwarded. It may fill the context,
    raise `GatewayError` to reject, or return a `Reply` to answer without going upstream (a cache
    hit). `on_response` runs in reverse order once the upstream answered, before the client sees
    headers; it may add `ctx.response_headers`. `on_complete` runs in reverse order after the
    response was fully sent or failed, for every stage whose `on_request` ran; it must not raise
    (release reservations, store in the cache, settle token counts). `start` and `stop` run once,
    in the gateway's lifespan (connect to Redis, close it).
    """

    name: str = "stage"
    # Whether on_request may change what later stages see of the request (headers, body, identity).
    # The cache stage reuses a lookup made before such stages only when none of them ran.
    rewrites_request: bool = True

    def enabled_for(self, ctx: RequestContext) -> bool:
        """Cheap check so a stage that has nothing to do for this route costs nothing."""
        return True

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def on_request(self, ctx: RequestContext) -> Reply | None:
        return None

    async def on_response(self, ctx: RequestContext) -> None:
        return None

    async def on_complete(self, ctx: RequestContext) -> None:
        return None

    async def on_model_change(self, ctx: RequestContext) -> None:
        """A fallback is about to send the request to another model (`ctx.model`, `ctx.pool`): a stage
        whose decision depends on the model makes it again (raise `GatewayError` to refuse that model)."""
        return None
