"""Stage 1: verify the partner's JWT and map its claims onto what the caller may do."""

from __future__ import annotations

from gateway.auth.verifier import JwtVerifier, bearer_token
from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.pipeline.stage import Stage


class JwtAuthStage(Stage):
    name = "jwt_auth"

    def __init__(self, verifier: JwtVerifier) -> None:
        self.verifier = verifier

    def enabled_for(self, ctx: RequestContext) -> bool:
        return ctx.route is not None and ctx.route.auth == "jwt"

    async def on_request(self, ctx: RequestContext) -> None:
        assert ctx.route is not None
        identity = await self.verifier.verify(bearer_token(ctx.headers.get("authorization")), ctx.route.issuers)
        unrouted = ctx.unrouted
        if unrouted is not None:
            ctx.route = None
            raise unrouted
        ctx.claims = identity.claims
        ctx.issuer = identity.issuer
        ctx.subject = identity.subject
        ctx.tenant = identity.tenant
        ctx.tier = identity.tier
        ctx.scopes = identity.scopes
        ctx.models_allowed = identity.models
        if not identity.may_use_route(ctx.route.name):
            raise GatewayError(403, f"token does not grant access to route {ctx.route.name!r}", "route_forbidden")
        if ctx.model is not None and not identity.may_use_model(ctx.model):
            raise GatewayError(403, f"token does not grant access to model {ctx.model!r}", "model_forbidden",
                               param="model")
