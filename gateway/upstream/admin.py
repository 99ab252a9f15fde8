"""The pools on the admin API: their endpoints, and backend rollouts to list, promote or abort by hand.

    GET  /admin/pools                    every pool's endpoints and their state
    GET  /admin/rollouts                 every pool's rollout in this worker
    POST /admin/rollouts/{pool}/promote  promote the canary group now
    POST /admin/rollouts/{pool}/abort    roll it back now

Mounted under the admin guard (`gateway.auth.admin.AdminGuard`): a handler runs only for an operator,
whose claims are `request.state.admin`.
"""

from __future__ import annotations

from typing import ClassVar

from starlette.endpoints import HTTPEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.errors import GatewayError
from gateway.feature import GatewayView
from gateway.upstream.rollout import BackendRollout


def _gateway(request: Request) -> GatewayView:
    gateway: GatewayView = request.app.state.gateway
    return gateway


def rollouts(gateway: GatewayView) -> list[dict[str, object]]:
    """Every pool's rollout in this worker (for /admin/status.json and the status page)."""
    return [pool.rollout.describe() for pool in gateway.upstreams.pools.values() if pool.rollout is not None]


def _rollout_of(request: Request) -> BackendRollout:
    name = request.path_params["pool"]
    pool = _gateway(request).upstreams.pools.get(name)
    if pool is None or pool.rollout is None:
        raise GatewayError(404, f"pool {name!r} has no rollout", "rollout_not_found")
    return pool.rollout


def _operator(request: Request) -> str:
    return str(request.state.admin.get("sub", "an operator"))


class Pools(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        return JSONResponse({name: [e.describe() for e in pool.endpoints]
                             for name, pool in _gateway(request).upstreams.pools.items()})


class Rollouts(HTTPEndpoint):
    async def get(self, request: Request) -> Response:
        return JSONResponse(rollouts(_gateway(request)), headers={"cache-control": "no-store"})


class _ByHand(HTTPEndpoint):
    """POST: an operator's verdict on a pool's rollout, shared with every worker; answered 500
    `rollout_not_shared` when it held here but could not be written for the others."""

    promotes: ClassVar[bool]

    async def post(self, request: Request) -> Response:
        rollout = _rollout_of(request)
        operator = _operator(request)
        try:
            if self.promotes:
                rollout.promote(f"promoted by {operator}")
            else:
                rollout.rollback(f"aborted by {operator}")
        except OSError as exc:  # logged where it failed
            done = "promoted" if self.promotes else "rolled back"
            raise GatewayError(500, f"the rollout was {done} in this worker only: its verdict could not be written "
                               f"for the other workers ({exc.strerror or exc})", "rollout_not_shared") from None
        return JSONResponse(rollout.describe())


class PromoteRollout(_ByHand):
    promotes = True


class AbortRollout(_ByHand):
    promotes = False


def upstream_routes() -> list[BaseRoute]:
    return [Route("/pools", Pools), Route("/rollouts", Rollouts),
            Route("/rollouts/{pool}/promote", PromoteRollout), Route("/rollouts/{pool}/abort", AbortRollout)]
