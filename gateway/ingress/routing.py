"""Match a request's path and model to a route, and a route to the pool that will serve it."""

from __future__ import annotations

from dataclasses import replace
from fnmatch import fnmatchcase

from gateway.config.reach import generation_models
from gateway.config.schema import GatewayConfig, RouteConfig
from gateway.errors import GatewayError


class RouteTable:
    """Routes in config order; the first whose path and model match wins (as Envoy's route table)."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.pool_models = {p.name: p.models for p in config.pools}
        self.by_path: dict[str, list[RouteConfig]] = {}
        self._pool_cache: dict[tuple[str, str | None], str | None] = {}
        # /v1/generate without `model`: the route's default_model, else its first generation model.
        self.default_models: dict[str, str | None] = {}
        for route in config.routes:
            for path in route.paths:
                self.by_path.setdefault(path, []).append(route)
            self.default_models[route.name] = route.default_model or next(
                iter(generation_models(route, config.pools)), None)
        self._gates = {path: _auth_gate(routes) for path, routes in self.by_path.items()}
        self._gate_any = _auth_gate(list(config.routes))

    def paths(self) -> list[str]:
        return list(self.by_path)

    def match(self, path: str, model: str | None) -> RouteConfig:
        routes = self.by_path.get(path)
        if not routes:
            raise GatewayError(404, f"no route for {path}", "route_not_found")
        for route in routes:
            if model is None or self.route_serves(route, model):
                return route
        raise GatewayError(404, f"model {model!r} does not exist or is not served here", "model_not_found",
                           param="model")

    def auth_gate(self, path: str) -> RouteConfig | None:
        """Where no route serves a request, the route whose JWT check runs before the 404: so a
        stranger cannot probe which models (or paths) exist. None when no route there needs a JWT."""
        return self._gates.get(path, self._gate_any)

    def default_model(self, route: RouteConfig) -> str | None:
        """The model `/v1/generate` uses when the request names none (never an embedding model)."""
        return self.default_models.get(route.name)

    def route_serves(self, route: RouteConfig, model: str) -> bool:
        if route.models:
            return any(fnmatchcase(model, pattern) for pattern in route.models)
        return self.pool_for_model(route, model) is not None

    def pool_for_model(self, route: RouteConfig, model: str | None) -> str | None:
        """The pool name for `model` on `route`: the route's pool, else the first pool serving it."""
        key = (route.name, model)
        try:
            return self._pool_cache[key]
        except KeyError:
            pass
        found = self._pool_for_model(route, model)
        if len(self._pool_cache) < 4096:  # model names come from clients: bound the memo
            self._pool_cache[key] = found
        return found

    def _pool_for_model(self, route: RouteConfig, model: str | None) -> str | None:
        if route.pool is not None:
            served = self.pool_models[route.pool]
            if model is None or not served or any(fnmatchcase(model, m) for m in served):
                return route.pool
            return None if not route.models else route.pool
        for name, served in self.pool_models.items():
            if model is not None and any(fnmatchcase(model, m) for m in served):
                return name
        return None

    def models_for(self, route: RouteConfig) -> set[str]:
        """Concrete model names reachable through a route (patterns are not listed)."""
        names: set[str] = set()
        pools = [route.pool] if route.pool else list(self.pool_models)
        for pool in pools:
            names.update(m for m in self.pool_models[pool] if not any(c in m for c in "*?["))
        if route.models:
            names = {m for m in names if any(fnmatchcase(m, p) for p in route.models)} | {
                m for m in route.models if not any(c in m for c in "*?[")}
        return names


def _auth_gate(routes: list[RouteConfig]) -> RouteConfig | None:
    """A JWT check accepting the issuers of any of these routes; None when none of them needs one."""
    jwt_routes = [r for r in routes if r.auth == "jwt"]
    if not jwt_routes:
        return None
    issuers: tuple[str, ...] = ()
    if all(r.issuers for r in jwt_routes):  # a route without `issuers` accepts every issuer
        issuers = tuple(dict.fromkeys(i for r in jwt_routes for i in r.issuers))
    return replace(jwt_routes[0], name="none", issuers=issuers, sections={})  # the gate runs no feature
