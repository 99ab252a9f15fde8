"""Active health checks: every endpoint's `GET /healthz` on an interval; ejected ones come back here."""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp

from gateway import metrics
from gateway.upstream.failures import UPSTREAM_ERRORS
from gateway.upstream.pool import Endpoint, Pool

log = logging.getLogger("edgegw.health")


class HealthChecker:
    """One task per pool. An ejected endpoint is re-admitted once its back-off expired and it is healthy."""

    def __init__(self, pool: Pool, session: aiohttp.ClientSession) -> None:
        self.pool = pool
        self.session = session
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"health:{self.pool.name}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def check_all(self) -> None:
        await asyncio.gather(*(self._check(e) for e in list(self.pool.endpoints)))

    async def _run(self) -> None:
        interval = self.pool.config.health.interval_s
        while True:
            try:
                await self.check_all()
            except Exception:  # a bug here must not stop health checking forever
                log.exception("health check round failed for pool %s", self.pool.name)
            await asyncio.sleep(interval)

    async def _check(self, endpoint: Endpoint) -> None:
        cfg = self.pool.config.health
        try:
            timeout = aiohttp.ClientTimeout(total=cfg.timeout_s)
            async with self.session.get(endpoint.url + cfg.path, timeout=timeout,
                                        headers=self.pool.config.upstream_headers) as resp:
                await resp.read()
                ok = resp.status == 200
        except UPSTREAM_ERRORS:  # garbage answers included: unhealthy, not a crashed round
            ok = False
        if ok != endpoint.healthy:  # recovering is good news (INFO); failing needs attention (WARNING)
            log.log(logging.INFO if ok else logging.WARNING, "endpoint %s in pool %s is now %s", endpoint.url,
                    self.pool.name, "healthy" if ok else "unhealthy")
        if not ok and endpoint.healthy:
            endpoint.affinity_epoch += 1  # it may come back with an empty cache: forget its prefixes now
            endpoint.signals = None
        endpoint.healthy = ok
        if endpoint.ejected and ok and time.monotonic() >= endpoint.ejected_until:
            log.info("endpoint %s in pool %s re-admitted", endpoint.url, self.pool.name)
            self.pool.readmit(endpoint)
        metrics.endpoint_healthy.labels(*endpoint.label()).set(
            1 if endpoint.healthy and not endpoint.ejected else 0)
