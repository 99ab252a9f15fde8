"""Assemble the gateway: a policy and the features (`gateway.features`) -> one worker's ASGI app.

The app knows no feature by name beyond the admin check (`gateway.auth`): the policy runtime builds
each version's objects from the features, and the admin API mounts each feature's routes."""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send

from gateway import metrics
from gateway.auth.admin import AdminGuard, RequireAdmin, make_require_admin
from gateway.auth.feature import AUTH
from gateway.auth.verifier import bearer_token
from gateway.config.schema import GatewayConfig
from gateway.errors import GatewayError, internal_error_body
from gateway.feature import Feature, StateKey
from gateway.features import FEATURES, load_config
from gateway.ingress.api import SPECS
from gateway.ingress.headers import single_authorization
from gateway.policy.admin import policy_routes
from gateway.policy.canary_control import CanaryControl
from gateway.policy.parts import Parts, stop_parts
from gateway.policy.runtime import PolicyRuntime
from gateway.serving import protocol
from gateway.serving.server import CONFIG_ENV, log_format
from gateway.status import StatusPage, sign_in_routes, status_routes
from gateway.upstream.forward import Upstreams

log = logging.getLogger("edgegw")
S = TypeVar("S")


class Gateway:
    """Everything one gateway worker runs (a `GatewayView` for the admin API and the status page).

    The request-path objects belong to the active policy version (`gateway.policy`): a reload
    installs a new `Parts` with `install`, one assignment."""

    def __init__(self, config: GatewayConfig, features: Sequence[Feature[Any]] = FEATURES) -> None:
        self.edge: EdgeApp | None = None
        self.features = features
        self.policy = PolicyRuntime(config, features, self.install)
        self.parts = self.policy.parts
        self.require_admin = _admin_check(self.parts)
        self.canary = CanaryControl(self.policy, self._set_entry)

    def install(self, parts: Parts) -> None:
        """Make `parts` the version new requests use (requests in flight keep theirs)."""
        self.parts = parts
        self.require_admin = _admin_check(parts)
        if self.edge is not None:
            self.edge._proxy = parts.proxy

    # --- what the admin API and the status page read (`GatewayView`) ------------------------------

    @property
    def config(self) -> GatewayConfig:
        return self.parts.config

    @property
    def upstreams(self) -> Upstreams:
        return self.parts.upstreams

    def state(self, key: StateKey[S]) -> S | None:
        return self.parts.state(key)

    def describe_policy(self) -> dict[str, Any]:
        return {**self.policy.describe(), "canary": self.canary.describe()}

    def _set_entry(self, proxy: Any) -> None:
        """The inference entry point: the active version's proxy, or a canary's split between two."""
        if self.edge is not None:
            self.edge._proxy = proxy

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        await self.policy.start()
        await self.canary.start()
        # Start-up objects live forever: move them out of the collector's way, and collect young
        # objects less often (requests allocate many short-lived ones).
        gc.collect()
        gc.freeze()
        gc.set_threshold(20_000, 20, 50)
        _log_readiness(self.config, self.upstreams)
        try:
            yield
        finally:
            await self.canary.stop()
            await self.policy.stop()
            await stop_parts(self.parts)

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
        parts = self.parts
        verifier = parts.state(AUTH.key)
        assert verifier is not None
        identity = None
        single_authorization(request.headers.raw)
        header = request.headers.get("authorization")
        public = [r for r in parts.config.routes if r.auth == "none"]
        if header or not public:
            identity = await verifier.verify(bearer_token(header))
        names: set[str] = set()
        for route in parts.config.routes:
            if route.auth != "none" and identity is None:
                continue
            if identity is not None and not identity.may_use_route(route.name):
                continue
            names |= parts.table.models_for(route)
        if identity is not None:
            names = {n for n in names if identity.may_use_model(n)}
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "edgegw",
                 "capabilities": parts.proxy.media.capabilities(n)} for n in sorted(names)]  # gateway.media
        return JSONResponse({"object": "list", "data": data})

    def routes(self) -> list[BaseRoute]:
        """The public endpoints, and `/admin`: one mount, the admin check applied once (`AdminGuard`)
        in front of every operator endpoint; the status page's sign-in and assets stand outside it."""
        guarded: list[BaseRoute] = [*policy_routes(), *status_routes()]
        for feature in self.features:
            if feature.admin_routes is not None:
                guarded += feature.admin_routes(self.config)
        return [
            Route("/v1/models", self.models, methods=["GET"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics, methods=["GET"]),
            Route("/admin", StatusPage),  # the page itself, or its sign-in form
            Mount("/admin", routes=[*sign_in_routes(),
                                    Mount("", routes=guarded, middleware=[Middleware(AdminGuard, routes=guarded)])]),
        ]


def _admin_check(parts: Parts) -> RequireAdmin:
    """A version's admin check: its verifier, its `admin:` settings."""
    verifier = parts.state(AUTH.key)
    assert verifier is not None  # the auth feature always has one
    return make_require_admin(verifier, parts.config.admin)


def _log_readiness(config: GatewayConfig, upstreams: Upstreams) -> None:
    """The start-up line: ready to accept requests, and how many endpoints of each pool are healthy.

    `/readyz` answers 503 while any pool has no healthy endpoint; this line says the same at start.
    """
    counts = {name: (sum(1 for e in pool.endpoints if e.usable), len(pool.endpoints))
              for name, pool in upstreams.pools.items()}
    pools = ", ".join(f"{name} {up}/{total}" for name, (up, total) in counts.items())
    log.info("edgegw ready: %d routes, %d pools; healthy endpoints: %s", len(config.routes), len(config.pools),
             pools)
    empty = [name for name, (up, _) in counts.items() if up == 0]
    if empty:
        log.warning("no healthy endpoint yet in pool(s) %s: their requests get 503 and /readyz answers 503 "
                    "until a health check passes", ", ".join(empty))


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
        self._proxy = gateway.parts.proxy  # replaced by `Gateway.install` on a policy reload
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


@functools.cache
def worker_config() -> GatewayConfig:
    """This worker process's policy: `edgegw serve` validated the file in the parent and named it in
    `EDGEGW_CONFIG`; uvicorn's workers are spawned, so each loads it again, once."""
    return load_config(os.environ[CONFIG_ENV])


def app_factory() -> EdgeApp:
    """What each worker process serves (uvicorn imports this by name: `serving.server.APP_FACTORY`)."""
    config = worker_config()
    log_format()  # spawned workers do not inherit the parent's logging set-up
    protocol.configure(protocol.ListenerLimits.of(config.server))
    return create_app(config)
