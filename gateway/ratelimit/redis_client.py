"""The one Redis connection of a gateway worker, shared by the rate limiter and the response cache.

Script calls made in the same event-loop iteration (many concurrent requests) go out as one
pipeline: one write, one connection, and much less redis-py overhead per call than one command each.

Every call is bounded by `timeout_ms` (a dead Redis must not hold requests) and never retried by
redis-py. After a failure the link is *degraded*: callers get `RedisUnavailable` at once, without
touching the network, until `retry_interval_s` has passed; then the next call probes Redis again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

from gateway.ratelimit.config import RedisConfig
from gateway.ratelimit.metrics import redis_degraded, redis_errors_total

log = logging.getLogger("edgegw.redis")


class RedisUnavailable(Exception):
    """Redis did not answer in time (or is known to be down); the caller applies its fallback."""


class LuaScript:
    """A Lua script run by SHA (`EVALSHA`); loaded at start-up and again after `NOSCRIPT`."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


class RedisLink:
    """A redis-py asyncio client (single node or cluster) with a deadline and a circuit breaker."""

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self.timeout_s = config.timeout_ms / 1000.0
        self.client: Any = None
        self.scripts: list[LuaScript] = []
        self._down_until = 0.0
        self._degraded = False
        self._users = 0
        self._batch: list[tuple[str, list[str], list[Any], asyncio.Future[Any]]] | None = None

    def register(self, script: LuaScript) -> LuaScript:
        """Scripts registered before `start` are loaded then (best effort: Redis may be down)."""
        if all(s.sha != script.sha for s in self.scripts):
            self.scripts.append(script)
        return script

    async def start(self) -> None:
        self._users += 1
        if self.client is not None:
            return
        cfg = self.config
        common: dict[str, Any] = {"socket_timeout": self.timeout_s, "socket_connect_timeout": self.timeout_s,
                                  "retry": Retry(NoBackoff(), 0)}
        if cfg.cluster:
            self.client = RedisCluster.from_url(cfg.url, max_connections=cfg.max_connections, **common)
        else:
            # Blocking pool: a burst waits (bounded by the deadline) for a free connection
            # instead of failing with "too many connections".
            pool = BlockingConnectionPool.from_url(cfg.url, max_connections=cfg.max_connections,
                                                   timeout=self.timeout_s, **common)
            self.client = Redis(connection_pool=pool)
        try:
            async with asyncio.timeout(max(1.0, self.timeout_s)):
                if cfg.cluster:
                    await self.client.initialize()
                for script in self.scripts:
                    await self.client.script_load(script.source)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("start", exc)

    async def stop(self) -> None:
        self._users -= 1
        if self._users > 0 or self.client is None:
            return
        client, self.client = self.client, None
        try:
            await client.aclose()
        except (RedisError, OSError):
            pass

    @property
    def degraded(self) -> bool:
        return self._degraded

    async def run(self, script: LuaScript, keys: list[str], args: list[Any], op: str = "script") -> Any:
        """EVALSHA within the deadline; raises `RedisUnavailable` on any failure."""
        if self._degraded and time.monotonic() < self._down_until:
            raise RedisUnavailable("redis is degraded")
        if self.client is None:
            raise RedisUnavailable("redis client not started")
        try:
            async with asyncio.timeout(self.timeout_s):
                try:
                    result = await self._evalsha(script.sha, keys, args)
                except NoScriptError:
                    # Redis restarted (or failed over) and lost its script cache.
                    await self.client.script_load(script.source)
                    result = await self._evalsha(script.sha, keys, args)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(op, exc)
            raise RedisUnavailable(str(exc) or type(exc).__name__) from None
        if self._degraded:
            self._recovered()
        return result

    def _evalsha(self, sha: str, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        if self.config.cluster:
            return asyncio.ensure_future(self.client.evalsha(sha, len(keys), *keys, *args))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self._batch is None:
            self._batch = []
            loop.call_soon(self._flush)
        self._batch.append((sha, keys, args, future))
        return future

    def _flush(self) -> None:
        batch, self._batch = self._batch, None
        if batch:
            asyncio.get_running_loop().create_task(self._send(batch))

    async def _send(self, batch: list[tuple[str, list[str], list[Any], asyncio.Future[Any]]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for sha, keys, args, _ in batch:
            pipe.evalsha(sha, len(keys), *keys, *args)
        try:
            results = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # noqa: BLE001 - every waiter gets the failure
            for *_, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RedisError("cancelled"))
            return
        for (*_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue  # its caller gave up (deadline)
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    def _failed(self, op: str, exc: BaseException) -> None:
        redis_errors_total.labels(op).inc()
        self._down_until = time.monotonic() + self.config.retry_interval_s
        if not self._degraded:
            self._degraded = True
            redis_degraded.set(1)
            log.warning("redis degraded (%s: %s): limits use their on_redis_error fallback, the cache is "
                        "bypassed; probing again every %.2fs", op, exc or type(exc).__name__,
                        self.config.retry_interval_s)

    def _recovered(self) -> None:
        self._degraded = False
        redis_degraded.set(0)
        log.warning("redis recovered: limits and the cache use Redis again")


_links: dict[int, RedisLink] = {}


def shared_link(config: RedisConfig) -> RedisLink:
    """One link per config object in a process, so the limiter and the cache share connections."""
    link = _links.get(id(config))
    if link is None or link.config is not config:
        link = _links[id(config)] = RedisLink(config)
    return link
