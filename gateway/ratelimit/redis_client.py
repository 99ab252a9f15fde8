"""The one Redis connection of a gateway worker, shared by the rate limiter and the response cache.

Script calls are the hot path (one or two per request), so on a single Redis node they bypass
redis-py's per-command machinery (argument encoding in Python, a pool checkout, a task and a timeout
per call, which cost more CPU than everything else a limited request does): every `EVALSHA` is packed
by hiredis in C (or, for the limit check, joined from arguments encoded once: `resp.py`) and written
to one pipelined connection (`redis_channel.py`), calls made in the same event-loop iteration in one
write, and replies are parsed by hiredis as they arrive and matched to callers in order (Redis
answers a connection's commands in order). redis-py still opens that connection (URL options, TLS,
AUTH, SELECT) and serves everything else: loading scripts, the Redis Cluster client.

Writes nobody waits for (a request's settlement and cache store, after its response) are *posted*:
all posts of one event-loop iteration are merged into a single script call whose reply is read and
dropped, so a request pays for one awaited round trip (its limit check), not two.

Every call is bounded by `timeout_ms` (a dead Redis must not hold requests) and never retried. After a
failure the link is *degraded*: callers get `RedisUnavailable` at once, without touching the network,
until `retry_interval_s` has passed; then the next call probes Redis again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Coroutine
from typing import Any

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError, ResponseError

from gateway.ratelimit import resp
from gateway.ratelimit.config import RedisConfig
from gateway.ratelimit.metrics import redis_degraded, redis_errors_total
from gateway.ratelimit.redis_channel import Channel, Post

log = logging.getLogger("edgegw.redis")

# Writes gathered for one SETTLE call (`gateway/ratelimit/lua.py`): its keys and their (op, a, b) values,
# encoded (`resp.bulk`). Several stages add to one, so a request's writes after the response take one
# round trip.
Ops = tuple[list[bytes], list[bytes]]


class RedisUnavailable(Exception):
    """Redis did not answer in time (or is known to be down); the caller applies its fallback."""


class LuaScript:
    """A Lua script run by SHA (`EVALSHA`); loaded at start-up and again after `NOSCRIPT`."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        # A call's first two arguments, encoded once: by SHA, or with the source after NOSCRIPT.
        self.evalsha = resp.bulk("EVALSHA") + resp.bulk(self.sha)
        self.eval = resp.bulk("EVAL") + resp.bulk(source)


class RedisLink:
    """A redis-py asyncio client (single node or cluster) with a deadline and a circuit breaker."""

    def __init__(self, config: RedisConfig) -> None:
        self.config = config
        self.timeout_s = config.timeout_ms / 1000.0
        self.client: Any = None
        self.scripts: list[LuaScript] = []
        # The response cache, when it shares this link: the limiter then looks a request's entry up
        # in its own script call (see `gateway/cache/stage.py`, `prefetch`).
        self.cache: Any = None
        self._down_until = 0.0
        self._degraded = False
        self._users = 0
        self._channel: Channel | None = None
        self._opening: asyncio.Task[Channel] | None = None
        self._batch: list[bytes] = []
        self._batch_futures: list[asyncio.Future[Any] | Post] = []
        self._posts: dict[str, Post] = {}  # posted calls of this loop iteration, merged per script
        self._background: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop  # set by `start`, before any call can reach the network

    @property
    def pipelined(self) -> bool:
        """Single node: calls share one connection, and one script may touch keys of any hash tag."""
        return not self.config.cluster

    def register(self, script: LuaScript) -> LuaScript:
        """Scripts registered before `start` are loaded then (best effort: Redis may be down)."""
        if all(s.sha != script.sha for s in self.scripts):
            self.scripts.append(script)
        return script

    async def start(self) -> None:
        self._users += 1
        if self.client is not None:
            return
        self._loop = asyncio.get_running_loop()
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
            self._failed("start", exc)

    async def drain(self) -> None:
        """Wait until Redis has answered every call sent or posted so far (replies come in order)."""
        if self._channel is None:
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._queue(hiredis.pack_command(("PING",)))
        except (RedisError, OSError, TimeoutError):
            pass

    async def stop(self) -> None:
        self._users -= 1
        if self._users > 0 or self.client is None:
            return
        await self.drain()  # posted settlements and cache stores of the last requests
        if self._opening is not None:
            self._opening.cancel()
        if self._channel is not None:
            self._channel.close(RedisConnectionError("gateway stopping"))
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
        if self.config.cluster:
            return await self._guarded(op, self._cluster_eval(script, keys, args))
        command = hiredis.pack_command(("EVALSHA", script.sha, len(keys), *keys, *args))
        return await self._guarded(op, self._single(script, command))

    async def call(self, script: LuaScript, nkeys: int, parts: list[bytes], op: str = "script") -> Any:
        """`run` on the hot path (single node only): `parts` are the keys (`nkeys` of them), then the
        arguments, already encoded (`resp.bulk`), after a first element left for this call's head."""
        parts[0] = b"*%d\r\n%b%b" % (2 + len(parts), script.evalsha, resp.INTS[nkeys])
        if self._channel is None or self._degraded:  # (re)connecting, degraded or recovering
            return await self._guarded(op, self._single(script, b"".join(parts)))
        try:
            return await self._queue(b"".join(parts))  # inline: the channel's watchdog bounds the wait
        except NoScriptError:
            return await self._guarded(op, self._single(script, b"".join(parts), reload=True))
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(op, exc)
            raise RedisUnavailable(str(exc) or type(exc).__name__) from None

    async def _guarded(self, op: str, attempt: Coroutine[Any, Any, Any]) -> Any:
        if (self._degraded and time.monotonic() < self._down_until) or self.client is None:
            attempt.close()
            raise RedisUnavailable("redis is degraded" if self.client is not None else "redis client not started")
        try:
            result = await attempt
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(op, exc)
            raise RedisUnavailable(str(exc) or type(exc).__name__) from None
        if self._degraded:
            self._recovered()
        return result

    async def _single(self, script: LuaScript, command: bytes, reload: bool = False) -> Any:
        """One script call on the pipelined connection; `command` is EVALSHA's (`script.evalsha`)."""
        if not reload:
            try:
                return await self._send(command)
            except NoScriptError:
                pass
        # Redis restarted (or failed over) and lost its script cache. EVAL with the source caches it
        # again, in the same round trip, on the same connection.
        head = command.index(script.evalsha)
        return await self._send(b"*%d\r\n%b%b" % (int(command[1:head - 2]), script.eval,
                                                  command[head + len(script.evalsha):]))

    async def _send(self, command: bytes) -> Any:
        if self._channel is not None:
            return await self._queue(command)  # the channel's watchdog bounds the wait
        async with asyncio.timeout(self.timeout_s):  # (re)connecting, then the call
            if self._opening is None:
                self._opening = asyncio.get_running_loop().create_task(self._open())
                self._opening.add_done_callback(_retrieve)
            # Shielded: one caller's deadline must not abort a connection other callers wait for.
            await asyncio.shield(self._opening)
            return await self._queue(command)

    async def _cluster_eval(self, script: LuaScript, keys: list[str], args: list[Any]) -> Any:
        async with asyncio.timeout(self.timeout_s):
            try:
                return await self.client.evalsha(script.sha, len(keys), *keys, *args)
            except NoScriptError:
                await self.client.script_load(script.source)
                return await self.client.evalsha(script.sha, len(keys), *keys, *args)

    def post(self, script: LuaScript, keys: list[bytes], args: list[bytes], op: str = "script") -> None:
        """Run a write script without waiting for it (single node only; keys and arguments encoded,
        `resp.bulk`): this loop iteration's posts of `script` are merged into one call (so the script
        must treat its keys and arguments as a concatenable list, as SETTLE does). Failures are
        counted, not raised; lost writes only err on the safe side (leases and lock leases expire)."""
        if self._degraded and time.monotonic() < self._down_until:
            return
        if self._channel is None:  # (re)connecting: take the ordinary path, in the background
            task = asyncio.get_running_loop().create_task(self._run_quietly(script, keys, args, op))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return
        merged = self._posts.get(script.sha)
        if merged is None:
            if not self._batch and not self._posts:
                self._loop.call_soon(self._flush)
            self._posts[script.sha] = (script, list(keys), list(args))
        else:
            merged[1].extend(keys)
            merged[2].extend(args)

    async def _run_quietly(self, script: LuaScript, keys: list[bytes], args: list[bytes], op: str) -> None:
        try:
            await self.call(script, len(keys), [b"", *keys, *args], op=op)
        except RedisUnavailable:
            pass

    def _post_failed(self, post: Post, error: ResponseError) -> None:
        script, keys, args = post
        if str(error).startswith("NOSCRIPT"):  # Redis restarted: send it again with the source
            self._enqueue(_posted(script.eval, keys, args), post)
            return
        redis_errors_total.labels("post").inc()
        log.warning("redis rejected a posted %s call: %s", script.name, error)

    def _queue(self, command: bytes) -> asyncio.Future[Any]:
        """Calls of one event-loop iteration leave in one write, at the end of the iteration."""
        future: asyncio.Future[Any] = self._loop.create_future()
        self._enqueue(command, future)
        return future

    def _enqueue(self, command: bytes, waiter: asyncio.Future[Any] | Post) -> None:
        if not self._batch and not self._posts:
            self._loop.call_soon(self._flush)
        self._batch.append(command)
        self._batch_futures.append(waiter)

    def _flush(self) -> None:
        batch, futures = self._batch, self._batch_futures
        self._batch, self._batch_futures = [], []
        if self._posts:
            for post in self._posts.values():
                script, keys, args = post
                batch.append(_posted(script.evalsha, keys, args))
                futures.append(post)
            self._posts = {}
        channel = self._channel
        if channel is None:  # lost since these calls were queued
            error = RedisConnectionError("connection to redis lost")
            for future in futures:
                if type(future) is not tuple and not future.done():
                    future.set_exception(error)
            return
        channel.send(b"".join(batch), futures)

    async def _open(self) -> Channel:
        try:
            conn = self.client.connection_pool.make_connection()
            await conn.connect()
            self._channel = Channel(conn, self.timeout_s, self._channel_closed, self._post_failed)
            return self._channel
        finally:
            self._opening = None

    def _channel_closed(self, channel: Channel) -> None:
        if self._channel is channel:
            self._channel = None

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


def _posted(head: bytes, keys: list[bytes], args: list[bytes]) -> bytes:
    """A merged posted call: `head` is the script's encoded EVALSHA (or EVAL) and SHA (or source)."""
    return b"".join((b"*%d\r\n%b%b" % (3 + len(keys) + len(args), head, resp.bulk_int(len(keys))), *keys, *args))


def _retrieve(task: asyncio.Task[Any]) -> None:
    """A failed connect nobody waits for any more (their deadlines passed) is not an error to log."""
    if not task.cancelled():
        task.exception()


_links: dict[int, RedisLink] = {}


def shared_link(config: RedisConfig) -> RedisLink:
    """One link per config object in a process, so the limiter and the cache share connections."""
    link = _links.get(id(config))
    if link is None or link.config is not config:
        link = _links[id(config)] = RedisLink(config)
    return link
