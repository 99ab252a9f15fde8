"""The request-path objects of one policy version, built with the previous version's long-lived state.

Each feature (`gateway.feature.Feature`) may own a long-lived object: the JWT verifier (JWKS key
sets, token cache), the rate limiter (its windows), the cache stage (its store), the plugin manager
(its instances). It is kept when the feature's `unchanged` key of the new policy equals the old
one's. The pools (health, ejections, keep-alive connections) are kept one by one
(`merge_upstreams`), the access log while its target is unchanged. Everything else (route table,
stage list, pipeline, proxy) is cheap and rebuilt. In-flight requests hold their version's objects,
so they finish on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import aiohttp

from gateway.accesslog import AccessLog
from gateway.config.schema import GatewayConfig
from gateway.context import RequestObserver
from gateway.feature import SLOTS, Feature, StateKey
from gateway.ingress.proxy import ProxyEndpoint
from gateway.ingress.routing import RouteTable
from gateway.pipeline.pipeline import Pipeline
from gateway.pipeline.stage import Stage
from gateway.upstream.discovery import DnsDiscovery
from gateway.upstream.fallback import FallbackSender, ModelPlans
from gateway.upstream.forward import Upstreams
from gateway.upstream.health import HealthChecker
from gateway.upstream.index_share import IndexShare
from gateway.upstream.signals import SignalScraper

S = TypeVar("S")


@dataclass
class _Building:
    """A version while its features build their objects (`gateway.feature.Assembly`)."""

    config: GatewayConfig
    table: RouteTable
    upstreams: Upstreams
    states: dict[str, object]

    def state(self, key: StateKey[S]) -> S | None:
        return cast("S | None", self.states.get(key.name))


@dataclass
class Parts:
    """One policy version's objects."""

    config: GatewayConfig
    table: RouteTable
    upstreams: Upstreams
    states: dict[str, object]  # feature name -> its long-lived object
    keys: dict[str, object]  # feature name -> the `unchanged` key its object was built for
    stages: list[Stage]
    pipeline: Pipeline
    access_log: AccessLog
    proxy: ProxyEndpoint
    # What this version created (to start, in this order) rather than took over from the previous one.
    fresh: list[object]

    def state(self, key: StateKey[S]) -> S | None:
        return cast("S | None", self.states.get(key.name))


def build_parts(config: GatewayConfig, features: Sequence[Feature[Any]], previous: Parts | None = None,
                upstreams: Upstreams | None = None) -> Parts:
    """A version's objects; `upstreams` (from `merge_upstreams`) when reloading."""
    prev = previous
    fresh: list[object] = []
    if upstreams is None:
        upstreams = Upstreams(config.pools)
        fresh.append(upstreams)
    building = _Building(config, RouteTable(config), upstreams, {})
    keys: dict[str, object] = {}
    for feature in features:
        if feature.state is None:
            continue
        key = keys[feature.name] = feature.unchanged(config) if feature.unchanged is not None else None
        state: object | None
        if prev is not None and feature.unchanged is not None and feature.name in prev.keys \
                and prev.keys[feature.name] == key:
            state = prev.states.get(feature.name)
        else:
            state = feature.state(building)
            if state is not None:
                fresh.append(state)
        if state is not None:
            building.states[feature.name] = state
    placed: list[tuple[int, Stage]] = []
    for feature in features:
        if feature.stages is not None:
            placed += [(SLOTS.index(slot), stage)
                       for slot, stage in feature.stages(building, building.states.get(feature.name))]
    stages = [stage for _, stage in sorted(placed, key=lambda p: p[0])]  # stable: features' order within a slot
    server = config.server
    if prev is not None and prev.config.server.access_log == server.access_log:
        access_log = prev.access_log
    else:
        access_log = AccessLog(server.access_log)
    plans = ModelPlans(config) if ModelPlans.needed(config) else None  # aliases, windows, fallbacks
    pipeline = Pipeline(stages, upstreams, (plans, FallbackSender(upstreams)) if plans is not None else None)
    observers = [building.states[f.name] for f in features if f.observes and f.name in building.states]
    proxy = ProxyEndpoint(building.table, pipeline, access_log, server.max_body_bytes, server.trust_forwarded_for,
                          tuple(cast("RequestObserver", o) for o in observers))
    return Parts(config, building.table, upstreams, building.states, keys, stages, pipeline, access_log, proxy, fresh)


async def start_parts(parts: Parts) -> None:
    """Start what this version created: the pools, then each feature's object in the features' order."""
    for part in parts.fresh:
        start = getattr(part, "start", None)
        if start is not None:
            await start()


async def stop_parts(parts: Parts) -> None:
    """At shutdown: every feature's object in reverse order, then the pools; the access log flushed."""
    for state in reversed(list(parts.states.values())):
        stop = getattr(state, "stop", None)
        if stop is not None:
            await stop()
    await parts.upstreams.stop()
    parts.access_log.flush()


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
    merged.scrapers = [s for s in previous.scrapers if s.pool.name in keep] + fresh.scrapers
    merged.shares = [s for s in previous.shares if s.pool.name in keep] + fresh.shares
    return merged


@dataclass
class Retired:
    """What the previous version alone used: stopped now (background work) or after the drain."""

    checkers: list[HealthChecker] = field(default_factory=list)
    discoveries: list[DnsDiscovery] = field(default_factory=list)
    # `balancer: inference` pools' metrics scrapes and prefix index exchanges
    pool_tasks: list[SignalScraper | IndexShare] = field(default_factory=list)
    sessions: list[aiohttp.ClientSession] = field(default_factory=list)
    stoppable: list[object] = field(default_factory=list)  # features' objects the new version dropped
    access_log: AccessLog | None = None

    async def stop_background(self) -> None:
        for d in self.discoveries:
            await d.stop()
        for c in self.checkers:
            await c.stop()
        for t in self.pool_tasks:
            await t.stop()

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
    kept = {id(s) for s in new.states.values()}
    return Retired(
        checkers=[c for c in up_old.checkers if c not in up_new.checkers],
        discoveries=[d for d in up_old.discoveries if d not in up_new.discoveries],
        pool_tasks=[*(t for t in up_old.scrapers if t not in up_new.scrapers),
                    *(t for t in up_old.shares if t not in up_new.shares)],
        sessions=[s for s in up_old.sessions.values() if id(s) not in live_sessions],
        stoppable=[s for s in old.states.values() if id(s) not in kept],
        access_log=old.access_log if old.access_log is not new.access_log else None,
    )
