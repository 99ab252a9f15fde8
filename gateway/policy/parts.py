"""The request-path objects of one policy version, built with the previous version's long-lived state.

Long-lived state is kept where its identity is unchanged (the config slice that built it compares
equal): the JWT verifier (JWKS key sets, token cache), each pool (health, ejections, keep-alive
connections), the rate limiter (its windows), the cache stage (its store), the plugin manager
(its instances) and the access log. Everything else (route table, stage list, pipeline, proxy) is
cheap and rebuilt. In-flight requests hold their version's objects, so they finish on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.accesslog import AccessLog
from gateway.auth.admin import make_require_admin
from gateway.auth.verifier import JwtVerifier
from gateway.config.schema import GatewayConfig
from gateway.pipeline import Pipeline, build_stages, model_plans
from gateway.proxy import ProxyEndpoint
from gateway.routing import RouteTable
from gateway.stages.base import Stage
from gateway.upstream.forward import Upstreams


@dataclass
class Parts:
    config: GatewayConfig
    verifier: JwtVerifier
    table: RouteTable
    upstreams: Upstreams
    plugins: Any | None
    stages: list[Stage]
    pipeline: Pipeline
    access_log: AccessLog
    proxy: ProxyEndpoint
    require_admin: Any
    # What this version created (to start) rather than took over from the previous one.
    fresh: list[Any] = field(default_factory=list)


def stage_identity(stage: Stage, config: GatewayConfig) -> Any:
    """The config slice a long-lived stage was built from; None for stages rebuilt every version.

    The rate limiter and the cache read their rules from `ctx.route` per request, so only the
    shared store and the lease-renewal period decide whether an instance can serve the new policy.
    """
    if stage.name == "ratelimit":
        leases = tuple(sorted(lim.lease_s for route in config.routes for lim in route.rate_limits
                              if any(q.kind == "concurrent" for qs in (lim.quotas, *lim.tiers.values())
                                     for q in qs)))
        return ("ratelimit", config.redis, leases[:1])
    if stage.name == "cache":
        return ("cache", config.redis, config.memory_cache)
    return None


def plugin_manager(config: GatewayConfig) -> Any | None:
    if not config.plugins and not config.plugin_dir:
        return None
    from gateway.plugins.embedder import plugin_manager as make_manager
    from gateway.startup import ensure_plugin_dir

    ensure_plugin_dir(config)
    return make_manager(config.plugins, config.plugin_dir)


def build_parts(config: GatewayConfig, previous: Parts | None = None,
                upstreams: Upstreams | None = None) -> Parts:
    """A version's objects; `upstreams` (from `merge_upstreams`) when reloading."""
    prev = previous
    fresh: list[Any] = []
    server = config.server
    if prev is not None and (prev.config.issuers, prev.config.server.max_token_bytes) == \
            (config.issuers, server.max_token_bytes):
        verifier = prev.verifier
    else:
        verifier = JwtVerifier(config.issuers, server.max_token_bytes)
        fresh.append(verifier)
    if prev is not None and (prev.config.plugins, prev.config.plugin_dir) == (config.plugins, config.plugin_dir):
        plugins = prev.plugins
    else:
        plugins = plugin_manager(config)
        if plugins is not None:
            fresh.append(plugins)
    table = RouteTable(config)
    if upstreams is None:
        upstreams = Upstreams(config.pools)
        fresh.append(upstreams)
    stages = build_stages(config, verifier, table, upstreams, plugins)
    if prev is not None:
        kept = {key: s for s in prev.stages if (key := stage_identity(s, prev.config)) is not None}
        stages = [kept.get(stage_identity(s, config), s) if stage_identity(s, config) is not None else s
                  for s in stages]
    fresh += [s for s in stages if prev is None or s not in prev.stages]
    if prev is not None and prev.config.server.access_log == server.access_log:
        access_log = prev.access_log
    else:
        access_log = AccessLog(server.access_log)
    pipeline = Pipeline(stages, upstreams, model_plans(config))
    proxy = ProxyEndpoint(table, pipeline, access_log, server.max_body_bytes, server.trust_forwarded_for)
    return Parts(config, verifier, table, upstreams, plugins, stages, pipeline, access_log, proxy,
                 make_require_admin(verifier, config.admin), fresh)


async def start_parts(parts: Parts) -> None:
    """Start what this version created, in the start-up order (keys, pools, stages, plugins)."""
    order = sorted(parts.fresh, key=lambda p: (0 if isinstance(p, JwtVerifier) else 1 if isinstance(p, Upstreams)
                                               else 3 if p is parts.plugins else 2))
    for part in order:
        start = getattr(part, "start", None)
        if start is not None:
            await start()


async def merge_upstreams(config: GatewayConfig, previous: Upstreams, previous_config: GatewayConfig) -> Upstreams:
    """The pools of `config`: unchanged ones taken over (health, connections), new or changed ones
    started (a first health round included) before the new version serves."""
    keep = {p.name for p in config.pools if previous_config.pool(p.name) == p}
    fresh = Upstreams(tuple(p for p in config.pools if p.name not in keep))
    await fresh.start()
    merged = Upstreams(config.pools)
    for name in merged.pools:
        source = previous if name in keep else fresh
        merged.pools[name] = source.pools[name]
        merged.sessions[name] = source.sessions[name]
    merged.checkers = [c for c in previous.checkers if c.pool.name in keep] + fresh.checkers
    merged.discoveries = [d for d in previous.discoveries if d.pool.name in keep] + fresh.discoveries
    return merged


@dataclass
class Retired:
    """What the previous version alone used: stopped now (background work) or after the drain."""

    checkers: list[Any] = field(default_factory=list)
    discoveries: list[Any] = field(default_factory=list)
    sessions: list[Any] = field(default_factory=list)
    stoppable: list[Any] = field(default_factory=list)  # stages, plugin manager
    access_log: AccessLog | None = None

    async def stop_background(self) -> None:
        for d in self.discoveries:
            await d.stop()
        for c in self.checkers:
            await c.stop()

    async def close(self) -> None:
        for part in self.stoppable:
            stop = getattr(part, "stop", None)
            if stop is not None:
                await stop()
        for session in self.sessions:
            await session.close()
        if self.access_log is not None:
            self.access_log.flush()


def retired(old: Parts, new: Parts) -> Retired:
    up_old, up_new = old.upstreams, new.upstreams
    live_sessions = {id(s) for s in up_new.sessions.values()}
    out = Retired(
        checkers=[c for c in up_old.checkers if c not in up_new.checkers],
        discoveries=[d for d in up_old.discoveries if d not in up_new.discoveries],
        sessions=[s for s in up_old.sessions.values() if id(s) not in live_sessions],
        stoppable=[s for s in old.stages if s not in new.stages],
        access_log=old.access_log if old.access_log is not new.access_log else None,
    )
    if old.plugins is not None and old.plugins is not new.plugins:
        out.stoppable.append(old.plugins)
    return out

