"""The response-cache stage: answer repeated requests from the cache, one backend call per miss.

on_request: BYPASS (not cacheable, `no-store`, `no-cache`, cache unreachable), HIT (answer now; SSE
replay for streams), or MISS. The first miss of a key takes a lock and goes to the backend; identical
misses wait for its entry (an in-process event, or polling Redis for other replicas) at most `wait_s`.
on_complete stores only good answers (`_storable`: status 200, a JSON object without a top-level
`error`, or a complete stream assembled into one) and releases the lock; anything else passes through.

With Redis (single node) and a rate-limited route, the limiter's script also does this stage's lookup
(`prefetch`: one round trip for both), and its settlement call after the response carries this stage's
store (`ctx.scratch["redis_ops"]`): two Redis calls per request instead of four.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass

import orjson

from gateway.cache.config import CacheRule
from gateway.cache.keys import cache_directives, cache_key, cacheable
from gateway.cache.sse import assemble, replay, replay_chunks
from gateway.cache.store import CacheStore, Encoded, MemoryCacheStore, RedisCacheStore, decode, encode
from gateway.config.schema import GatewayConfig
from gateway.context import RequestContext
from gateway.ratelimit import resp
from gateway.ratelimit.metrics import cache_requests_by
from gateway.ratelimit.redis_client import Ops, RedisUnavailable, shared_link
from gateway.ratelimit.redis_limiter import Lookup
from gateway.ratelimit.stage import OPS, PREFETCH
from gateway.reply import Reply
from gateway.stages.base import Stage

HEADER = "x-edgegw-cache"


@dataclass(slots=True)
class Flight:
    """A miss this process is fetching that identical local misses wait for, on `done`. Made by the
    first of them: most misses have no waiter, and a Flight (or an Event) each would be wasted."""

    done: asyncio.Event
    entry: bytes | None = None


@dataclass(slots=True)
class Prefetch:
    """A lookup the rate limiter made in its own script call, for the request as it was then."""

    key: str
    token: str
    ran: int  # stages that had run when it was made (-1: unknown); a later one that rewrites the request voids it
    encoded: Encoded  # the entry's and lock's keys and the token, as the lookup sent them
    found: tuple[bytes | None, bool] = (None, False)  # (entry, this request took the lock)


@dataclass(slots=True)
class Pending:
    key: str
    rule: CacheRule
    token: str | None  # set when this request holds the single-flight lock
    encoded: Encoded | None = None  # (Redis) key, lock key and token encoded, when a lookup made them


class CacheStage(Stage):
    name = "cache"

    def __init__(self, config: GatewayConfig) -> None:
        self.link = shared_link(config.redis) if config.redis is not None else None
        self.store: CacheStore = (RedisCacheStore(self.link, config.redis.key_prefix)
                                  if self.link is not None and config.redis is not None else MemoryCacheStore.for_config(config))
        self.flights: dict[str, Flight | None] = {}  # misses fetched here; None until someone waits
        self._replica = uuid.uuid4().hex[:12]
        self._ids = itertools.count()
        self._redis = self.store if isinstance(self.store, RedisCacheStore) else None
        self._memory = self.store if isinstance(self.store, MemoryCacheStore) else None
        if self.link is not None and self.link.pipelined:
            self.link.cache = self  # the limiter shares this link: it may look entries up for us

    async def start(self) -> None:
        if self.link is not None:
            await self.link.start()

    async def stop(self) -> None:
        if self.link is not None:
            await self.link.stop()

    def enabled_for(self, ctx: RequestContext) -> bool:
        return ctx.route is not None and ctx.route.cache is not None

    def prefetch(self, ctx: RequestContext) -> tuple[Prefetch, Lookup] | None:
        """For the limiter's script: this request's cache lookup, when it will make one."""
        rule = ctx.route.cache if ctx.route is not None else None
        if rule is None or self._redis is None or not cacheable(ctx, rule):
            return None
        if "cache-control" in ctx.headers and cache_directives(ctx) != (True, True):
            return None
        key = cache_key(ctx)
        token = f"{self._replica}:{next(self._ids)}"
        encoded = self._redis.encoded(key, token)
        return (Prefetch(key, token, len(ctx.ran), encoded),
                (*encoded, resp.bulk_int(int(rule.lock_s * 1000))))  # type: ignore[return-value]

    async def on_request(self, ctx: RequestContext) -> Reply | None:
        assert ctx.route is not None
        rule: CacheRule = ctx.route.cache
        pre: Prefetch | None = ctx.scratch.pop(PREFETCH, None)
        if pre is not None and pre.ran >= 0 and _unchanged_since(ctx.ran, pre.ran):
            # The request is as the prefetch saw it: cacheable, readable, and under the same key.
            key, token, (entry, leader), encoded = pre.key, pre.token, pre.found, pre.encoded
        else:
            read, write = cache_directives(ctx)
            if not write or not cacheable(ctx, rule):
                if pre is not None:
                    await self._drop(pre)
                return self._status(ctx, "BYPASS")
            # A stage since the prefetch (a plugin) may have changed the request: recompute its key.
            key = cache_key(ctx)
            if not read:  # no-cache: a fresh answer, which refreshes the entry
                if pre is not None:
                    await self._drop(pre)
                self._pending(ctx, Pending(key, rule, None))
                return self._status(ctx, "BYPASS")
            if pre is not None and pre.key == key:
                token, (entry, leader), encoded = pre.token, pre.found, pre.encoded
            else:
                encoded = None
                if pre is not None:
                    await self._drop(pre)
                token = f"{self._replica}:{next(self._ids)}"
                if self._memory is not None:  # nothing to wait for: no coroutine
                    entry, leader = self._memory.lookup_now(key, token, int(rule.lock_s * 1000))
                else:
                    try:
                        entry, leader = await self.store.lookup(key, token, int(rule.lock_s * 1000))
                    except RedisUnavailable:
                        return self._status(ctx, "BYPASS")
        if entry is None and not leader:  # another request is fetching it: wait for its answer
            entry = await self._wait(key, rule)
        return self._answer(ctx, rule, key, token, entry, leader, encoded)

    def _answer(self, ctx: RequestContext, rule: CacheRule, key: str, token: str, entry: bytes | None,
                leader: bool, encoded: Encoded | None) -> Reply | None:
        """After the lookup (and any wait): a HIT, or a MISS this request fetches."""
        if entry is None and leader:
            self.flights[key] = None
            self._pending(ctx, Pending(key, rule, token, encoded))
            return self._status(ctx, "MISS")
        if entry is not None:
            hit = self._hit(ctx, entry)
            if hit is not None:
                return hit
        # The first miss failed or is too slow: go to the backend ourselves (and store what we get).
        self._pending(ctx, Pending(key, rule, None))
        return self._status(ctx, "MISS")

    def release_ops(self, pre: Prefetch, ops: Ops) -> None:
        """A prefetch the request never reached this stage to use: release its lock with `ops`."""
        if pre.found[1] and self._redis is not None:
            self._redis.unlock_ops(pre.encoded, ops)

    async def _drop(self, pre: Prefetch) -> None:
        """A prefetched lookup this request will not use: release the lock it took, if any."""
        if pre.found[1]:
            try:
                await self.store.unlock(pre.key, pre.token)
            except RedisUnavailable:
                pass  # the lock's lease ends it

    async def _wait(self, key: str, rule: CacheRule) -> bytes | None:
        if key in self.flights:  # fetched by a request of this process: wait for its answer
            flight = self.flights[key]
            if flight is None:
                flight = self.flights[key] = Flight(asyncio.Event())
            try:
                await asyncio.wait_for(flight.done.wait(), rule.wait_s)
            except TimeoutError:
                return None
            return flight.entry
        deadline = time.monotonic() + rule.wait_s
        delay = 0.005
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, 0.05)
            try:
                entry, locked = await self.store.peek(key)
            except RedisUnavailable:
                return None
            if entry is not None or not locked:
                return entry
        return None

    def _hit(self, ctx: RequestContext, entry: bytes) -> Reply | None:
        decoded = decode(entry)
        if decoded is None:
            return None
        body, age = decoded
        headers = {HEADER: "HIT", "age": str(int(age))}
        if ctx.stream:
            options = (ctx.body_json or {}).get("stream_options") or {}
            try:
                chunks = replay_chunks(ctx.path, body, bool(options.get("include_usage")))
            except (ValueError, TypeError, AttributeError):
                return None  # not an answer (stored by an older gateway): fetch a fresh one
            self._status(ctx, "HIT")
            return Reply(200, headers, stream=replay(chunks))
        self._status(ctx, "HIT")
        headers["content-type"] = "application/json"
        return Reply(200, headers, body=body)

    @staticmethod
    def _pending(ctx: RequestContext, pending: Pending) -> None:
        ctx.scratch["cache"] = pending
        ctx.collect_response = True

    @staticmethod
    def _status(ctx: RequestContext, status: str) -> None:
        assert ctx.route is not None
        ctx.cache_status = status
        ctx.response_headers[HEADER] = status
        cache_requests_by.get(ctx.route.name, status).inc()

    async def on_complete(self, ctx: RequestContext) -> None:
        pending: Pending | None = ctx.scratch.pop("cache", None)
        if pending is None:
            return
        # The rate limiter completes after us and sends these writes with its settlement, when it can.
        ops: Ops | None = ctx.scratch.get(OPS)
        entry = None
        try:
            body = _storable(ctx, pending.rule.max_bytes)
            if body is not None:
                entry = encode(body)
                ttl_ms = int(pending.rule.ttl_s * 1000)
                if ops is not None and self._redis is not None:
                    self._redis.put_ops(pending.encoded or self._redis.encoded(pending.key, pending.token), entry,
                                        ttl_ms, ops)
                elif self._memory is not None:
                    self._memory.put_now(pending.key, entry, ttl_ms, pending.token)
                else:
                    await self.store.put(pending.key, entry, ttl_ms, pending.token)
            elif pending.token is not None:
                if ops is not None and self._redis is not None:
                    self._redis.unlock_ops(pending.encoded or self._redis.encoded(pending.key, pending.token), ops)
                else:
                    await self.store.unlock(pending.key, pending.token)
        except RedisUnavailable:
            pass  # the lock's lease ends it; waiters go to the backend
        finally:
            if pending.token is not None:
                flight = self.flights.pop(pending.key, None)
                if flight is not None:  # someone waits
                    flight.entry = entry
                    flight.done.set()


def _storable(ctx: RequestContext, max_bytes: int) -> bytes | None:
    """The answer to store, or None: only a 200 that is a JSON object without a top-level `error`
    (a complete stream assembled into one), no larger than `max_bytes`."""
    body = ctx.response_body if ctx.status == 200 and ctx.error is None else None
    if body is None:
        return None
    if ctx.stream:
        body = assemble(ctx.path, body)  # None unless complete and valid; what it builds is valid JSON
        return body if body is not None and len(body) <= max_bytes else None
    if body[:1] != b"{" or len(body) > max_bytes:
        return None
    if ctx.usage is not None and b'"error"' not in body:
        return body  # (the forwarder parsed it: a JSON object with usage, from an application/json answer)
    if not ctx.upstream_content_type.startswith("application/json"):
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(data, dict) and "error" not in data else None


def _unchanged_since(ran: list[Stage], start: int) -> bool:
    """No stage that may rewrite the request ran between the prefetch and this stage (the last)."""
    for i in range(start, len(ran) - 1):
        if ran[i].rewrites_request:
            return False
    return True


def build_cache_stage(config: GatewayConfig) -> list[Stage]:
    """The stage (in a list) when any route caches, else nothing."""
    if not any(route.cache is not None for route in config.routes):
        return []
    return [CacheStage(config)]
