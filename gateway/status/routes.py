"""HTTP handlers of the status page: sign-in with the admin JWT into a cookie, the page, its data."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

import gateway.status.render as render
from gateway.auth.admin import ADMIN_COOKIE, CSRF_COOKIE, cross_site, new_csrf_token
from gateway.errors import GatewayError
from gateway.feature import GatewayView
from gateway.status.snapshot import snapshot

_STATIC = {name: (Path(__file__).with_name("static") / name).read_bytes()
           for name in ("status.css", "status.js")}
_TYPES = {"css": "text/css; charset=utf-8", "js": "text/javascript; charset=utf-8"}
_MAX_FORM = 16384
# The page loads nothing from elsewhere and runs no inline script: a strict policy costs nothing.
_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'",
    "cache-control": "no-store",
    # Not no-referrer: under that policy a browser sends `Origin: null` even on the page's own form
    # posts, and null is what the CSRF checks refuse. same-origin still sends nothing to other sites.
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
}
_COOKIE_MAX_AGE_S = 12 * 3600  # at most; shorter when the token expires sooner


class _AdminEndpoint(HTTPEndpoint):
    """An admin resource: the gateway serving it is the app's (`app.state.gateway`)."""

    @property
    def gateway(self) -> GatewayView:
        gateway: GatewayView = self.scope["app"].state.gateway
        return gateway

    async def operator(self, request: Request) -> dict[str, Any] | None:
        """The signed-in operator's claims, or None when signed out."""
        try:
            claims: dict[str, Any] = await self.gateway.require_admin(request)
            return claims
        except GatewayError as exc:
            if exc.status == 400:  # a malformed request (a repeated Authorization) is not "signed out"
                raise
            return None

    def require_enabled(self, request: Request) -> None:
        if not self.gateway.config.admin.enabled:
            raise GatewayError(404, f"no such endpoint: {request.url.path}", "not_found")


class StatusPage(_AdminEndpoint):
    """`/admin`: the page, or the sign-in form without a valid admin cookie."""

    async def get(self, request: Request) -> Response:
        self.require_enabled(request)
        claims = await self.operator(request)
        if claims is None:
            expired = ADMIN_COOKIE in request.cookies
            resp = _html(render.login_page("Your session ended; sign in again." if expired else None))
            if expired:
                resp.delete_cookie(ADMIN_COOKIE, path="/admin")
                resp.delete_cookie(CSRF_COOKIE, path="/admin")
            return resp
        # The page carries the CSRF token its script and forms send back (double submit); a
        # session signed in before the token existed gets one now.
        csrf = request.cookies.get(CSRF_COOKIE) or new_csrf_token()
        resp = _html(render.status_page(snapshot(self.gateway), str(claims.get("sub", "operator")), csrf))
        if CSRF_COOKIE not in request.cookies:
            _set_cookie(resp, request, CSRF_COOKIE, csrf, _COOKIE_MAX_AGE_S)
        return resp


class Login(_AdminEndpoint):
    """`/admin/login`: trade an admin JWT (form field `token`) for the session cookies."""

    async def post(self, request: Request) -> Response:
        self.require_enabled(request)
        # A sign-in form posted from another site (or from an opaque origin: `Origin: null`) would
        # log the operator's browser into a session of the attacker's choosing.
        if cross_site(request):
            return _html(render.login_page("Cross-site sign-in refused."), 403)
        body = await request.body()
        if len(body) > _MAX_FORM:
            return _html(render.login_page("That is too long for a token."), 413)
        token = "".join(parse_qs(body.decode("utf-8", "replace")).get("token", [""])[0].split())
        if token.lower().startswith("bearer"):
            token = token[6:]
        if not token:
            return _html(render.login_page("Paste an admin token."), 400)
        # The same check as every admin endpoint, on the token as a bearer credential.
        probe = Request({"type": "http", "method": "GET", "path": "/admin", "query_string": b"",
                         "headers": [(b"authorization", f"Bearer {token}".encode("latin-1", "replace"))]})
        try:
            claims = await self.gateway.require_admin(probe)
        except GatewayError as exc:
            return _html(render.login_page(f"Sign-in refused: {exc.message}"), exc.status)
        resp = RedirectResponse("/admin", status_code=303)
        exp = claims.get("exp")
        max_age = _COOKIE_MAX_AGE_S
        if isinstance(exp, int | float):
            max_age = max(1, min(max_age, int(exp - time.time())))
        _set_cookie(resp, request, ADMIN_COOKIE, token, max_age)
        _set_cookie(resp, request, CSRF_COOKIE, new_csrf_token(), max_age)
        return resp


class Logout(_AdminEndpoint):
    """`/admin/logout`: forget the session cookies."""

    async def post(self, request: Request) -> Response:
        # Signing out grants nothing, so no token is asked for; another site still may not do it.
        if cross_site(request):
            raise GatewayError(403, "cross-origin sign-out refused", "csrf_origin")
        resp = RedirectResponse("/admin", status_code=303)
        resp.delete_cookie(ADMIN_COOKIE, path="/admin")
        resp.delete_cookie(CSRF_COOKIE, path="/admin")
        return resp


class Panel(_AdminEndpoint):
    """`/admin/panel`: the page's refreshing part, as HTML (behind the admin guard)."""

    async def get(self, request: Request) -> Response:
        return _html(render.panel(snapshot(self.gateway)))


class StatusJson(_AdminEndpoint):
    """`/admin/status.json`: the page's data, for scripts (behind the admin guard)."""

    async def get(self, request: Request) -> Response:
        return JSONResponse(snapshot(self.gateway), headers={"cache-control": "no-store"})


class StaticAsset(HTTPEndpoint):
    """`/admin/static/NAME`: the page's stylesheet and script."""

    async def get(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            raise GatewayError(404, f"no such endpoint: {request.url.path}", "not_found")
        return Response(_STATIC[name], media_type=_TYPES[name.rsplit(".", 1)[1]],
                        headers={"cache-control": "max-age=300", "x-content-type-options": "nosniff"})


def _set_cookie(resp: Response, request: Request, name: str, value: str, max_age: int) -> None:
    # HttpOnly both: the page reads its CSRF token from its own HTML, never from document.cookie.
    resp.set_cookie(name, value, max_age=max_age, path="/admin", httponly=True, samesite="strict",
                    secure=request.url.scheme == "https")


def _html(text: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(text, status_code=status, headers=_HEADERS)


def sign_in_routes() -> list[BaseRoute]:
    """Under `/admin`, outside the admin guard: signing in and out, and the page's assets."""
    return [Route("/login", Login), Route("/logout", Logout), Route("/static/{name}", StaticAsset)]


def status_routes() -> list[BaseRoute]:
    """Under `/admin`, behind the admin guard: the page's data."""
    return [Route("/panel", Panel), Route("/status.json", StatusJson)]
