"""Backend rollouts on the admin API and the status page: list, promote or abort by hand."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.errors import GatewayError


def rollouts(gateway: Any) -> list[dict[str, Any]]:
    """Every pool's rollout in this worker (for /admin/status.json and the status page)."""
    return [pool.rollout.describe() for pool in gateway.upstreams.pools.values() if pool.rollout is not None]


def rollout_routes(gateway: Any, require_admin: Callable[[Request], Awaitable[Any]]) -> list[Route]:
    """GET /admin/rollouts; POST /admin/rollouts/{pool}/promote and /abort (this worker's rollout)."""

    async def listing(request: Request) -> Response:
        await require_admin(request)
        return JSONResponse(rollouts(gateway), headers={"cache-control": "no-store"})

    def rollout_of(request: Request) -> Any:
        name = request.path_params["pool"]
        pool = gateway.upstreams.pools.get(name)
        if pool is None or pool.rollout is None:
            raise GatewayError(404, f"pool {name!r} has no rollout", "rollout_not_found")
        return pool.rollout

    async def promote(request: Request) -> Response:
        claims = await require_admin(request)
        rollout = rollout_of(request)
        try:
            rollout.promote(f"promoted by {claims.get('sub', 'an operator')}")
        except OSError as exc:  # logged where it failed
            raise _not_shared("promoted", exc) from None
        return JSONResponse(rollout.describe())

    async def abort(request: Request) -> Response:
        claims = await require_admin(request)
        rollout = rollout_of(request)
        try:
            rollout.rollback(f"aborted by {claims.get('sub', 'an operator')}")
        except OSError as exc:  # logged where it failed
            raise _not_shared("rolled back", exc) from None
        return JSONResponse(rollout.describe())

    return [Route("/admin/rollouts", listing, methods=["GET"]),
            Route("/admin/rollouts/{pool}/promote", promote, methods=["POST"]),
            Route("/admin/rollouts/{pool}/abort", abort, methods=["POST"])]


def _not_shared(done: str, exc: OSError) -> GatewayError:
    return GatewayError(500, f"the rollout was {done} in this worker only: its verdict could not be written for "
                        f"the other workers ({exc.strerror or exc})", "rollout_not_shared")
