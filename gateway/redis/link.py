"""The one Redis connection of a gateway worker, shared by the rate limiter and the response cache.

Script calls are the hot path (one or two per request), so on a single Redis node they bypass
redis-py's per-command machinery (argument encoding in Python, a pool checkout, a task and a timeout
per call, which cost more CPU than everything else a limited request does): every call is encoded by
`wire.py`, queued in the `Outbox` (calls of one event-loop iteration leave in one write) and sent on
one pipelined connection (`Channel`), whose replies hiredis parses as they arrive and hands to their
callers in order (Redis answers a connection's commands in order). redis-py still opens that
connection (URL options, TLS, AUTH, SELECT) and serves everything else: loading scripts, the Redis
Cluster client.

Writes nobody waits for (a request's settlement and cache store, after its response) are *posted*:
the outbox merges all posts of one event-loop iteration into a single script call whose reply is read
and dropped, so a request pays for one awaited round trip (its limit check), not two.

Every call is bounded by `timeout_ms` (a dead Redis must not hold requests) and never retried; a
failure opens the circuit `Breaker`. A script Redis no longer knows (`NOSCRIPT`: it restarted or failed
over) is sent again with its source.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError, NoScriptError, RedisError, ResponseError

from gateway.feature import StateKey
from gateway.redis import wire
from gateway.redis.breaker import Breaker
from gateway.redis.channel import Channel, Posted
from gateway.redis.config import RedisConfig
from gateway.redis.metrics import redis_errors_total
from gateway.redis.outbox import Outbox
from gateway.redis.script import Script

log = logging.getLogger("edgegw.redis")


class RedisUnavailable(Exception):
    """Redis did not answer in time (or is known to be down); the caller applies its fallback."""


LINK: StateKey[RedisLink] = StateKey("redis")  # the redis feature's long-lived object


class RedisLink:
    """A redis-py asyncio client (single node or cluster) with a deadline and a circuit breaker."""

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self.timeout_s = config.timeout_ms / 1000.0
        self.client: Any = None
        self.scripts: list[Script] = []
        self.breaker = Breaker(config.retry_interval_s)
        self._users = 0
        self._outbox: Outbox | None = None  # set by `start`, before any call can reach the network
        self._opening: asyncio.Task[Channel] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def pipelined(self) -> bool:
        """Single node: calls share one connection, and one script may touch keys of any hash tag."""
        return not self.config.cluster

    @property
    def degraded(self) -> bool:
        return self.breaker.degraded

    def register(self, script: Script) -> Script:
        """Scripts registered before `start` are loaded then (best effort: Redis may be down)."""
        if all(s.sha != script.sha for s in self.scripts):
            self.scripts.append(script)
        return script

    # -- lifecycle

    async def start(self) -> None:
        self._users += 1
        if self.client is not None:
            return
        self._outbox = Outbox(asyncio.get_running_loop())
        cfg = self.config
        common: dict[str, Any] = {"socket_timeout": self.timeout_s, "socket_connect_timeout": self.timeout_s,
                                  "retry": Retry(NoBackoff(), 0)}
        if cfg.cluster:
            self.client = RedisCluster.from_url(cfg.url, max_connections=cfg.max_connections, **common)
        else:
            # Blocking pool (for the slow path: script loads): a burst waits, bounded by the deadline,
            # for a free connection instead of failing with "too many connections".
            pool = BlockingConnectionPool.from_url(cfg.url, max_connections=cfg.max_connections,
                                                   timeout=self.timeout_s, **common)
            self.client = Redis(connection_pool=pool)
        try:
            async with asyncio.timeout(max(1.0, self.timeout_s)):
                if cfg.cluster:
                    await self.client.initialize()
                for script in self.scripts:
                    await self.client.script_load(script.source)
                if not cfg.cluster:
                    await self._open()
        except (RedisError, OSError, TimeoutError) as exc:
            self.breaker.failed("start", exc)

    async def drain(self) -> None:
        """Wait until Redis has answered every call sent or posted so far (replies come in order)."""
        if self._outbox is None or self._outbox.channel is None:
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._outbox.call(wire.PING)
        except (RedisError, OSError, TimeoutError):
            pass

    async def stop(self) -> None:
        self._users -= 1
        if self._users > 0 or self.client is None:
            return
        await self.drain()  # posted settlements and cache stores of the last requests
        if self._opening is not None:
            self._opening.cancel()
        if self._outbox is not None and self._outbox.channel is not None:
            self._outbox.channel.close(RedisConnectionError("gateway stopping"))
        client, self.client = self.client, None
        try:
            await client.aclose()
        except (RedisError, OSError):
            pass

    async def _open(self) -> Channel:
        assert self._outbox is not None
        try:
            conn = self.client.connection_pool.make_connection()
            await conn.connect()
            channel = self._outbox.channel = Channel(conn, self.timeout_s, self._channel_closed, self._post_failed)
            return channel
        finally:
            self._opening = None

    def _channel_closed(self, channel: Channel) -> None:
        if self._outbox is not None and self._outbox.channel is channel:
            self._outbox.channel = None

    # -- calls

    async def run(self, script: Script, keys: list[str], args: list[str | bytes | int], op: str = "script") -> Any:
        """EVALSHA within the deadline (plain keys and arguments); raises `RedisUnavailable` on any failure."""
        if self.config.cluster:
            return await self._guarded(op, self._cluster_eval(script, keys, args))
        parts = wire.arguments([*keys, *args])
        return await self._guarded(op, self._single(lambda source: script.call(len(keys), parts, source)))

    async def run_encoded(self, script: Script, keys: list[bytes], args: list[bytes], op: str = "script") -> Any:
        """`run` with keys and arguments already encoded (a `SettleBatch`'s)."""
        if self.config.cluster:
            return await self.run(script, wire.decode(keys), wire.decode(args), op)  # type: ignore[arg-type]
        parts = keys + args
        return await self._guarded(op, self._single(lambda source: script.call(len(keys), parts, source)))

    async def call(self, script: Script, nkeys: int, parts: list[bytes], op: str = "script") -> Any:
        """`run` on the hot path (single node only): `parts` are the keys (`nkeys` of them), then the
        arguments, already encoded (`wire.bulk`)."""
        outbox = self._outbox
        if outbox is None or outbox.channel is None or self.breaker.degraded:  # (re)connecting or degraded
            return await self._guarded(op, self._single(lambda source: script.call(nkeys, parts, source)))
        try:
            # (the channel's watchdog bounds the wait)
            return await outbox.call(wire.script_call(script.evalsha, nkeys, parts))
        except NoScriptError:
            return await self._guarded(op, self._send(script.call(nkeys, parts, source=True)))
        except (RedisError, OSError, TimeoutError) as exc:
            self.breaker.failed(op, exc)
            raise RedisUnavailable(str(exc) or type(exc).__name__) from None

    def post(self, script: Script, keys: list[bytes], args: list[bytes], op: str = "script") -> None:
        """Run a write script without waiting for it (single node only; keys and arguments encoded),
        merged with this loop iteration's other posts of `script` (`Outbox.post`). Failures are counted,
        not raised; lost writes only err on the safe side (leases and lock leases expire)."""
        if self.breaker.degraded and self.breaker.open:
            return
        if self._outbox is None or self._outbox.channel is None:  # (re)connecting: the ordinary path, in the background
            task = asyncio.get_running_loop().create_task(self._run_quietly(script, keys, args, op))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return
        self._outbox.post(script, keys, args)

    async def _run_quietly(self, script: Script, keys: list[bytes], args: list[bytes], op: str) -> None:
        try:
            await self.run_encoded(script, keys, args, op=op)
        except RedisUnavailable:
            pass

    async def _guarded(self, op: str, attempt: Coroutine[Any, Any, Any]) -> Any:
        if self.client is None or self.breaker.open:
            attempt.close()
            raise RedisUnavailable("redis is degraded" if self.client is not None else "redis client not started")
        try:
            result = await attempt
        except (RedisError, OSError, TimeoutError) as exc:
            self.breaker.failed(op, exc)
            raise RedisUnavailable(str(exc) or type(exc).__name__) from None
        self.breaker.succeeded()
        return result

    async def _single(self, command: Callable[[bool], bytes]) -> Any:
        """One script call on the pipelined connection: `command(False)` (by SHA), then, if Redis lost
        the script (`NOSCRIPT`), `command(True)` (with its source)."""
        try:
            return await self._send(command(False))
        except NoScriptError:
            return await self._send(command(True))

    async def _send(self, command: bytes) -> Any:
        assert self._outbox is not None
        if self._outbox.channel is not None:
            return await self._outbox.call(command)  # the channel's watchdog bounds the wait
        async with asyncio.timeout(self.timeout_s):  # (re)connecting, then the call
            if self._opening is None:
                self._opening = asyncio.get_running_loop().create_task(self._open())
                self._opening.add_done_callback(_retrieve)
            # Shielded: one caller's deadline must not abort a connection other callers wait for.
            await asyncio.shield(self._opening)
            return await self._outbox.call(command)

    async def _cluster_eval(self, script: Script, keys: list[str], args: list[str | bytes | int]) -> Any:
        async with asyncio.timeout(self.timeout_s):
            try:
                return await self.client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await self.client.script_load(script.source)
                return await self.client.evalsha(script.sha, len(keys), *keys, *args)

    def _post_failed(self, post: Posted, error: ResponseError) -> None:
        if str(error).startswith("NOSCRIPT"):  # Redis restarted: send it again with the source
            assert self._outbox is not None
            self._outbox.queue(post.command(source=True), post)
            return
        redis_errors_total.labels("post").inc()
        log.warning("redis rejected a posted %s call: %s", post.script.name, error)


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A failed connect nobody waits for any more (their deadlines passed) is not an error to log."""
    if not task.cancelled():
        task.exception()
