"""Stage: resolve the backend pool (after routing plugins had their say)."""

from __future__ import annotations

from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.ingress.routing import RouteTable
from gateway.pipeline.stage import Stage
from gateway.upstream.forward import Upstreams


class PoolSelectStage(Stage):
    name = "pool_select"
    rewrites_request = False

    def __init__(self, table: RouteTable, upstreams: Upstreams) -> None:
        self.table = table
        self.upstreams = upstreams

    async def on_request(self, ctx: RequestContext) -> None:
        assert ctx.route is not None
        name = ctx.pool_override or self.table.pool_for_model(ctx.route, ctx.model)
        pool = self.upstreams.pools.get(name) if name else None
        if pool is None:
            if ctx.pool_override:
                raise GatewayError(500, f"routing selected unknown pool {ctx.pool_override!r}",
                                   "routing_error")
            raise GatewayError(404, f"model {ctx.model!r} is not served on this route", "model_not_found",
                               param="model")
        ctx.pool = pool
