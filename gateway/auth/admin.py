"""Operator authentication for `/admin`: a JWT carrying the admin scope."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request

from gateway.auth.verifier import JwtVerifier, bearer_token
from gateway.config.schema import AdminConfig
from gateway.errors import GatewayError

ADMIN_COOKIE = "edgegw_admin"

RequireAdmin = Callable[[Request], Awaitable[dict[str, Any]]]


def make_require_admin(verifier: JwtVerifier, admin: AdminConfig) -> RequireAdmin:
    """Build the check every admin endpoint awaits; it returns the operator's claims or raises 401/403."""
    allowed = (admin.issuer,) if admin.issuer else ()

    async def require_admin(request: Request) -> dict[str, Any]:
        header = request.headers.get("authorization")
        cookie = request.cookies.get(ADMIN_COOKIE)
        token = bearer_token(header) if header or not cookie else cookie
        identity = await verifier.verify(token, allowed)
        if admin.scope not in identity.scopes:
            raise GatewayError(403, f"the '{admin.scope}' scope is required", "admin_scope_required")
        return identity.claims

    return require_admin
