"""Endpoint discovery by DNS: a pool follows the A records of a name (a headless Kubernetes service).

Every `interval_s` the name is resolved again. New addresses join the pool unhealthy, are probed at
once, and take traffic when healthy; then vanished ones are drained (no new requests, in-flight ones
finish) and removed when idle, unless nothing healthy would be left. A failed or empty lookup
changes nothing: a DNS hiccup must never empty a pool, and endpoints that really died fail their
health checks anyway.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from prometheus_client import Counter

from gateway import metrics
from gateway.config.schema import EndpointConfig
from gateway.upstream.config import DnsConfig
from gateway.upstream.dns import DnsError, query_a, system_a
from gateway.upstream.pool import Endpoint, Pool

log = logging.getLogger("edgegw.discovery")

discovery_events = Counter("edgegw_discovery_events_total", "DNS discovery changes and failures by kind",
                           ["pool", "event"], registry=metrics.registry)

_REAP_INTERVAL_S = 0.1  # how often draining endpoints are checked for their last request


class DnsDiscovery:
    """Keeps one pool's discovered endpoints equal to what its DNS name resolves to."""

    def __init__(self, pool: Pool, config: DnsConfig, session: aiohttp.ClientSession | None = None) -> None:
        self.pool = pool
        self.config = config
        self.session = session  # for probing new endpoints at once; None: leave it to the health checker
        self.discovered: dict[str, Endpoint] = {}  # url -> endpoint this discovery added
        self._task: asyncio.Task[None] | None = None

    async def resolve(self) -> list[str]:
        cfg = self.config
        if cfg.resolver is not None:
            return await query_a(cfg.name, cfg.resolver, cfg.timeout_s)
        return await system_a(cfg.name, cfg.timeout_s)

    async def refresh(self) -> None:
        """Resolve once and reconcile the pool with the answer."""
        try:
            addresses = await self.resolve()
        except (DnsError, OSError) as exc:
            discovery_events.labels(self.pool.name, "error").inc()
            log.warning("pool %s: resolving %s failed, keeping %d endpoints: %s", self.pool.name,
                        self.config.name, len(self.discovered), exc)
            return
        if not addresses:
            discovery_events.labels(self.pool.name, "empty").inc()
            log.warning("pool %s: %s has no addresses, keeping %d endpoints", self.pool.name,
                        self.config.name, len(self.discovered))
            return
        await self.reconcile({self.config.url(a) for a in addresses})

    async def reconcile(self, wanted: set[str]) -> None:
        """Make before break: add and probe new URLs, then drain those no longer wanted."""
        added = [self._add(url) for url in sorted(wanted) if url not in self.discovered]
        if added and self.session is not None:
            await asyncio.gather(*(self._probe(e) for e in added))
        for url in sorted(wanted):
            endpoint = self.discovered[url]
            if endpoint.draining:
                endpoint.draining = False
                discovery_events.labels(self.pool.name, "undrained").inc()
                log.warning("pool %s: endpoint %s is back, no longer draining", self.pool.name, url)
        vanished = [e for url, e in self.discovered.items() if url not in wanted and not e.draining]
        others = [e for e in self.pool.endpoints if e not in vanished]
        if vanished and not any(e.usable for e in others):
            # Draining now would leave nothing to serve (say the replacements are still loading):
            # keep serving from the old ones and try again next round.
            discovery_events.labels(self.pool.name, "drain_postponed").inc()
            log.warning("pool %s: %d endpoints left DNS but no replacement is healthy yet; not draining",
                        self.pool.name, len(vanished))
            vanished = []
        for endpoint in vanished:
            endpoint.draining = True
            discovery_events.labels(self.pool.name, "draining").inc()
            log.warning("pool %s: endpoint %s left DNS, draining %d in flight", self.pool.name, endpoint.url,
                        endpoint.in_flight)
        self.reap()

    def _add(self, url: str) -> Endpoint:
        endpoint = self.pool.add_endpoint(EndpointConfig(url, self.config.weight, self.config.group))
        # Unhealthy until a health check says otherwise: a pod listed in DNS may still be loading.
        endpoint.healthy = False
        metrics.endpoint_healthy.labels(*endpoint.label()).set(0)
        self.discovered[url] = endpoint
        discovery_events.labels(self.pool.name, "added").inc()
        log.warning("pool %s: discovered endpoint %s", self.pool.name, url)
        return endpoint

    async def _probe(self, endpoint: Endpoint) -> None:
        """One health check of a new endpoint, so it can serve before the checker's next round."""
        assert self.session is not None
        health = self.pool.config.health
        try:
            async with self.session.get(endpoint.url + health.path, headers=self.pool.config.upstream_headers,
                                        timeout=aiohttp.ClientTimeout(total=health.timeout_s)) as resp:
                await resp.read()
                endpoint.healthy = resp.status == 200
        except (TimeoutError, aiohttp.ClientError, OSError):
            endpoint.healthy = False
        metrics.endpoint_healthy.labels(*endpoint.label()).set(1 if endpoint.healthy else 0)

    def reap(self) -> None:
        """Remove drained endpoints whose last request has finished."""
        for url, endpoint in list(self.discovered.items()):
            if endpoint.draining and endpoint.in_flight <= 0:
                self.pool.remove_endpoint(endpoint)
                del self.discovered[url]
                discovery_events.labels(self.pool.name, "removed").inc()
                log.warning("pool %s: endpoint %s removed", self.pool.name, url)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"dns:{self.pool.name}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_refresh = loop.time() + self.config.interval_s
        while True:
            await asyncio.sleep(min(_REAP_INTERVAL_S, max(0.0, next_refresh - loop.time())))
            try:
                if loop.time() >= next_refresh:
                    next_refresh = loop.time() + self.config.interval_s
                    await self.refresh()
                else:
                    self.reap()
            except Exception:  # a bug here must not stop discovery forever
                log.exception("dns discovery round failed for pool %s", self.pool.name)
