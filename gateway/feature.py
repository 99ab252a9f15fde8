"""A feature module: everything one feature package adds to the gateway, declared in one object.

Each feature package (`gateway/auth`, `gateway/ratelimit`, `gateway/cache`, ...) declares one
`Feature` in its `feature.py`; `gateway/features.py` lists them. The config loader, the policy
runtime and the app iterate over that list and know no feature by name. A feature carries:

- `config`: its keys, parsers, descriptions and how a reload applies them (`ConfigPart`);
- `state` and `unchanged`: its long-lived object (a verifier, a limiter, a plugin manager) and the
  key a reload compares to decide that the new policy's object would be the same, so it is kept;
- `stages`: its pipeline stages, each placed in a slot of `SLOTS`;
- `admin_routes`: its endpoints under `/admin` (the admin guard is applied once, around them all);
- `status`: its part of `/admin/status.json` and of the status page;
- `installed`: what it does when a policy version becomes the active one;
- `observes`: its object watches every inference request (`RequestObserver`: telemetry).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from gateway.config.part import ConfigPart
from gateway.config.schema import GatewayConfig

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.routing import BaseRoute

    from gateway.ingress.routing import RouteTable
    from gateway.pipeline.stage import Stage
    from gateway.upstream.forward import Upstreams

# Where a stage runs, in pipeline order (on_response / on_complete run in reverse).
SLOTS = ("authenticate", "plugins:auth", "admit", "plugins:routing", "select", "plugins:preprocess",
         "answer", "plugins:response")

State = TypeVar("State")
S = TypeVar("S")


@dataclass(frozen=True)
class StateKey(Generic[S]):
    """Names a feature's long-lived object with its type: `gateway.state(KEY)` is a `S | None`.
    A feature's key is `feature.key`; a module its feature imports declares the same key itself."""

    name: str


class Assembly(Protocol):
    """One policy version as it is being built: what a feature's factories may use."""

    @property
    def config(self) -> GatewayConfig: ...

    @property
    def table(self) -> RouteTable: ...

    @property
    def upstreams(self) -> Upstreams: ...

    def state(self, key: StateKey[S]) -> S | None:
        """The long-lived object of a feature listed before the asking one (None: it has none)."""


class GatewayView(Protocol):
    """What the status page, the admin API and rollouts read from a running gateway worker: the
    objects of the active policy version (they change on a reload)."""

    @property
    def config(self) -> GatewayConfig: ...

    @property
    def upstreams(self) -> Upstreams: ...

    @property
    def features(self) -> Sequence[Feature[Any]]: ...

    def state(self, key: StateKey[S]) -> S | None:
        """The active version's long-lived object of a feature (None: it has none)."""

    def require_admin(self, request: Request) -> Awaitable[dict[str, Any]]:
        """The operator's claims, or GatewayError (400/401/403/404): the active version's admin check."""

    def describe_policy(self) -> dict[str, Any]:
        """The policy runtime's and canary's state (`GET /admin/policy`)."""


Placed = tuple[str, "Stage"]  # (slot, stage)


@dataclass(frozen=True)
class Feature(Generic[State]):
    """One feature package's contribution. Every hook is optional."""

    config: ConfigPart[Any, Any, Any]
    state: Callable[[Assembly], State | None] | None = None
    unchanged: Callable[[GatewayConfig], object] | None = None
    stages: Callable[[Assembly, State | None], Sequence[Placed]] | None = None
    admin_routes: Callable[[GatewayConfig], Sequence[BaseRoute]] | None = None
    status: Callable[[GatewayView, float], dict[str, object]] | None = None
    installed: Callable[[GatewayConfig], None] | None = None
    # Its state is a `gateway.context.RequestObserver` the proxy calls on every inference request.
    observes: bool = False

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def key(self) -> StateKey[State]:
        return StateKey(self.config.name)
