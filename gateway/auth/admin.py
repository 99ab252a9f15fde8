"""Operator authentication for `/admin`: a JWT carrying the admin scope, as a bearer token or as the
status page's cookie; cookie requests that change state also pass the CSRF checks below.

A browser attaches the cookie to requests other sites make it send; it never attaches an
Authorization header on its own. So a bearer request is not CSRF-prone, while a cookie request that
changes state must show it comes from the status page itself: a same-origin `Origin` (or, without
one, `Sec-Fetch-Site: same-origin`) and the CSRF token (the `edgegw_csrf` cookie, repeated in the
`X-CSRF-Token` header or the form's `csrf_token` field: double submit).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.auth.verifier import JwtVerifier, bearer_token
from gateway.config.schema import AdminConfig
from gateway.errors import GatewayError
from gateway.ingress.headers import single_authorization

ADMIN_COOKIE = "edgegw_admin"
CSRF_COOKIE = "edgegw_csrf"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

RequireAdmin = Callable[[Request], Awaitable[dict[str, Any]]]


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def same_origin(request: Request) -> bool:
    """The request says it comes from a page of this very origin (Origin, else Sec-Fetch-Site)."""
    origin = request.headers.get("origin")
    if origin is not None:
        return _origin_is_host(origin, request)
    return request.headers.get("sec-fetch-site") == "same-origin"


def cross_site(request: Request) -> bool:
    """The request says it comes from another origin, or from an opaque one (`Origin: null`: a
    sandboxed frame, a data: URL). Requests saying nothing (scripts, curl) are not cross-site."""
    origin = request.headers.get("origin")
    if origin is not None and not _origin_is_host(origin, request):
        return True
    fetch_site = request.headers.get("sec-fetch-site")
    return fetch_site is not None and fetch_site not in ("same-origin", "none")


def _origin_is_host(origin: str, request: Request) -> bool:
    if origin == "null":
        return False
    parts = urlsplit(origin)
    host = request.headers.get("host", "")
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == host.lower()


def check_csrf(request: Request, submitted: str | None = None) -> None:
    """403 unless a cookie-authenticated state change comes from the status page itself."""
    if not same_origin(request):
        raise GatewayError(403, "cross-origin admin request refused (Origin must be this site)", "csrf_origin")
    expected = request.cookies.get(CSRF_COOKIE, "")
    given = submitted if submitted is not None else request.headers.get(CSRF_HEADER, "")
    if not expected or not given or not hmac.compare_digest(expected.encode(), given.encode()):
        raise GatewayError(403, f"missing or wrong CSRF token (send the {CSRF_COOKIE} cookie's value "
                                f"in the {CSRF_HEADER} header)", "csrf_token")


def make_require_admin(verifier: JwtVerifier, admin: AdminConfig) -> RequireAdmin:
    """Build the check every admin endpoint awaits; it returns the operator's claims or raises 400/401/403/404."""
    allowed = (admin.issuer,) if admin.issuer else ()

    async def require_admin(request: Request) -> dict[str, Any]:
        if not admin.enabled:
            raise GatewayError(404, f"no such endpoint: {request.url.path}", "not_found")
        single_authorization(request.headers.raw)
        header = request.headers.get("authorization")
        cookie = request.cookies.get(ADMIN_COOKIE)
        if header or not cookie:
            token = bearer_token(header)
        else:
            token = cookie
            if request.method not in SAFE_METHODS:
                check_csrf(request)
        identity = await verifier.verify(token, allowed)
        if admin.scope not in identity.scopes:
            raise GatewayError(403, f"the '{admin.scope}' scope is required", "admin_scope_required")
        return identity.claims

    return require_admin


class AdminGuard:
    """ASGI middleware in front of the operator endpoints of `/admin`: the admin check, applied once.

    Only a request that one of `routes` serves is checked (an unknown path stays a 404); the
    operator's claims are then `request.state.admin`. The check is the active policy version's
    (`app.state.gateway.require_admin`)."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and any(route.matches(scope)[0] is Match.FULL for route in self.routes):
            claims = await scope["app"].state.gateway.require_admin(Request(scope))
            scope.setdefault("state", {})["admin"] = claims
        await self.app(scope, receive, send)
