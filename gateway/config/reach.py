"""Which generation models a route reaches: what the loader checks `routes[].default_model` against,
and what the route table picks for `/v1/generate` without a model."""

from __future__ import annotations

from fnmatch import fnmatchcase

from gateway.config.schema import PoolConfig, RouteConfig


def generation_models(route: RouteConfig, pools: tuple[PoolConfig, ...]) -> list[str]:
    """Concrete generation (not embedding) models a route reaches, in config order: its pool's, or every
    pool's when it names none, narrowed by the route's `models` patterns."""
    # Linear in models per route (a policy reload rebuilds this for hundreds of routes): names kept in
    # an ordered dict, literal route patterns matched by set membership.
    literal = None if any(_wild(p) for p in route.models) else frozenset(route.models)
    names: dict[str, None] = {}
    for pool in pools:
        if route.pool is not None and pool.name != route.pool:
            continue
        embedding = frozenset(pool.embedding_models)
        for m in pool.models:
            if m in embedding or m in names or _wild(m):
                continue
            if not route.models or (m in literal if literal is not None
                                    else any(fnmatchcase(m, p) for p in route.models)):
                names[m] = None
    return list(names)


def _wild(name: str) -> bool:
    return "*" in name or "?" in name or "[" in name


def reaches_generation_model(route: RouteConfig, pools: tuple[PoolConfig, ...], model: str) -> bool:
    """Whether `model` is a generation model `route` can reach (pool patterns count, embedding models not)."""
    if route.models and not any(fnmatchcase(model, p) for p in route.models):
        return False
    for pool in pools:
        if route.pool is not None and pool.name != route.pool:
            continue
        if model in pool.embedding_models:
            continue
        if any(fnmatchcase(model, m) for m in pool.models if m not in pool.embedding_models):
            return True
    return False
