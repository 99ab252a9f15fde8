"""Assemble the gateway: config -> verifier, pools, pipeline, plugins -> a Starlette app."""

from __future__ import annotations

import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway import metrics
from gateway.api import SPECS
from gateway.auth.admin import RequireAdmin
from gateway.auth.verifier import bearer_token, single_authorization
from gateway.config.schema import GatewayConfig
from gateway.errors import GatewayError, internal_error_body
from gateway.policy.admin import policy_routes
from gateway.policy.canary_control import CanaryControl
from gateway.policy.parts import Parts
from gateway.policy.rollouts import rollout_routes
from gateway.policy.runtime import PolicyRuntime
from gateway.startup import log_readiness, plugins_off_routes
from gateway.status import status_routes
from gateway.telemetry.usage_report import usage_routes

log = logging.getLogger("edgegw")


class Gateway:
    """Everything one gateway worker runs. The request-path objects belong to the active policy
    version (`gateway.policy`): a reload installs a new set with `install`, one assignment each."""

    def __init__(self, config: GatewayConfig) -> None:
        self.edge: EdgeApp | None = None
        self.policy = PolicyRuntime(config, self.install)
        self.install(self.policy.parts)
        self.canary = CanaryControl(self.policy, self._set_entry)

    def install(self, parts: Parts) -> None:
        """Make `parts` the version new requests use (requests in flight keep theirs)."""
        self.config = parts.config
        self.verifier = parts.verifier
        self.table = parts.table
        self.upstreams = parts.upstreams
        self.plugins = parts.plugins
        self.stages = parts.stages
        self.pipeline = parts.pipeline
        self.access_log = parts.access_log
        self.telemetry = parts.telemetry
        self.proxy = parts.proxy
        self._require_admin: RequireAdmin = parts.require_admin
        if self.edge is not None:
            self.edge._proxy = parts.proxy

    def _set_entry(self, proxy: Any) -> None:
        """The inference entry point: the active version's proxy, or a canary's split between two."""
        if self.edge is not None:
            self.edge._proxy = proxy

    async def require_admin(self, request: Request) -> dict[str, Any]:
        """The admin check of the active version (its issuer and scope)."""
        return await self._require_admin(request)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.policy.start()
        await self.canary.start()
        # Start-up objects live forever: move them out of the collector's way, and collect young
        # objects less often (requests allocate many short-lived ones).
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 50)
        log_readiness(self.config, self.upstreams)
        try:
            yield
        finally:
            await self.canary.stop()
            await self.policy.stop()
            if self.plugins is not None:
                await self.plugins.stop()
            for stage in self.stages:
                await stage.stop()
            await self.upstreams.stop()
            if self.telemetry is not None:
                await self.telemetry.stop()
            self.access_log.flush()

    # --- small endpoints -----------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        pools = {name: pool.has_healthy() for name, pool in self.upstreams.pools.items()}
        ready = all(pools.values())
        return JSONResponse({"ready": ready, "pools": pools}, status_code=200 if ready else 503)

    async def metrics(self, request: Request) -> Response:
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    async def models(self, request: Request) -> Response:
        """The models the caller may use: those of routes it can reach, filtered by its token."""
        identity = None
        single_authorization(request.headers.raw)
        header = request.headers.get("authorization")
        public = [r for r in self.config.routes if r.auth == "none"]
        if header or not public:
            identity = await self.verifier.verify(bearer_token(header))
        names: set[str] = set()
        for route in self.config.routes:
            if route.auth != "none" and identity is None:
                continue
            if identity is not None and not identity.may_use_route(route.name):
                continue
            names |= self.table.models_for(route)
        if identity is not None:
            names = {n for n in names if identity.may_use_model(n)}
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "edgegw",
                 "capabilities": self.proxy.media.capabilities(n)} for n in sorted(names)]  # gateway.media
        return JSONResponse({"object": "list", "data": data})

    def routes(self) -> list[Any]:
        routes: list[Any] = [
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/admin/pools", AdminPools),
            *status_routes(),
            *policy_routes(self.policy, self.canary, self.require_admin),
            *rollout_routes(self, self.require_admin),
            *usage_routes(self),
        ]
        if self.plugins is not None:
            from gateway.plugins.admin import plugin_routes

            routes += plugin_routes()
        else:
            routes += plugins_off_routes(self.config, self.require_admin)
        return routes


class AdminPools(HTTPEndpoint):
    """`/admin/pools`: every pool's endpoints and their state."""

    async def get(self, request: Request) -> Response:
        gateway: Gateway = request.app.state.gateway
        await gateway.require_admin(request)
        return JSONResponse({name: [e.describe() for e in pool.endpoints]
                             for name, pool in gateway.upstreams.pools.items()})


def _error_json(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> Response:
    return GatewayError(status, message, code, headers=headers).response()


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _error_json(404, f"no such endpoint: {request.url.path}", "not_found")
    if exc.status_code == 405:
        return _error_json(405, f"method {request.method} not allowed on {request.url.path}",
                           "method_not_allowed", dict(exc.headers or {}))
    return _error_json(exc.status_code, str(exc.detail), "http_error")


async def _gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return exc.response()


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path)
    return Response(orjson.dumps(internal_error_body()), status_code=500, media_type="application/json")


class EdgeApp:
    """The ASGI entry point: inference paths go straight to the proxy, everything else to Starlette.

    The hot path skips Starlette's middleware and route matching (docs/benchmarks.md has what it saves).
    """

    def __init__(self, gateway: Gateway, starlette: Starlette) -> None:
        self.gateway = gateway
        self.starlette = starlette
        self.state = starlette.state
        self._proxy = gateway.proxy  # replaced by `Gateway.install` on a policy reload
        gateway.edge = self
        self._hot = frozenset(SPECS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self._hot:
            await self._proxy(scope, receive, send)
        else:
            await self.starlette(scope, receive, send)


def create_app(config: GatewayConfig) -> EdgeApp:
    gateway = Gateway(config)
    app = Starlette(
        routes=gateway.routes(),
        lifespan=gateway.lifespan,
        exception_handlers={HTTPException: _http_exception, GatewayError: _gateway_error, Exception: _unexpected},
    )
    app.state.gateway = gateway
    return EdgeApp(gateway, app)
