"""The response-cache stage: answer repeated requests from the cache, one backend call per miss.

on_request: BYPASS (not cacheable, `no-store`, `no-cache`, cache unreachable), HIT (answer now; SSE
replay for streams), or MISS. The first miss of a key takes a lock and goes to the backend; identical
misses wait for its entry (an in-process event, or polling Redis for other replicas) at most `wait_s`.
on_complete stores only good answers (`_storable`: status 200, a JSON object without a top-level
`error`, or a complete stream assembled into one) and releases the lock; anything else passes through.

With Redis (single node) and a rate-limited route, this stage rides on the limiter's Redis calls
(`gateway/redis/piggyback.py`): the limiter's script makes the lookup this stage plans (`plan_lookup`:
one round trip for both), and its settlement call after the response carries this stage's store (the
request's `Piggyback`): two Redis calls per request instead of four.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass

import orjson

from gateway.cache.config import NAME, CacheRule, route_rule
from gateway.cache.keys import cache_directives, cache_key, cacheable
from gateway.cache.metrics import cache_requests_by
from gateway.cache.sse import assemble, replay, replay_chunks
from gateway.cache.store import CacheStore, MemoryCacheStore, RedisCacheStore, decode, encode
from gateway.config.schema import GatewayConfig
from gateway.context import RequestContext
from gateway.pipeline.stage import Stage
from gateway.redis.config import redis_config
from gateway.redis.link import RedisLink, RedisUnavailable
from gateway.redis.piggyback import Lookup
from gateway.redis.settle import SettleBatch
from gateway.reply import Reply

HEADER = "x-edgegw-cache"


@dataclass(slots=True)
class Flight:
    """A miss this process is fetching that identical local misses wait for, on `done`. Made by the
    first of them: most misses have no waiter, and a Flight (or an Event) each would be wasted."""

    done: asyncio.Event
    entry: bytes | None = None


class Prefetch(Lookup):
    """A lookup the rate limiter's script made for this stage, for the request as it was then: its
    cache key, and how many stages had run (-1: unknown); a later one that rewrites the request voids it."""

    __slots__ = ("key", "ran")  # set by `plan_lookup`, which makes it
    key: str
    ran: int


@dataclass(slots=True)
class Pending:
    key: str
    rule: CacheRule
    token: str | None  # set when this request holds the single-flight lock
    lookup: Lookup | None = None  # (Redis) the lookup the limiter made for it, whose keys its writes reuse


class CacheStage(Stage):
    name = "cache"

    def __init__(self, config: GatewayConfig, link: RedisLink | None = None) -> None:
        redis = redis_config(config)
        self.link = link
        self.store: CacheStore = (RedisCacheStore(self.link, redis.key_prefix)
                                  if self.link is not None and redis is not None else MemoryCacheStore.for_config(config))
        self.flights: dict[str, Flight | None] = {}  # misses fetched here; None until someone waits
        self._replica = uuid.uuid4().hex[:12]
        self._ids = itertools.count()
        self._redis = self.store if isinstance(self.store, RedisCacheStore) else None

    def enabled_for(self, ctx: RequestContext) -> bool:
        return ctx.route is not None and NAME in ctx.route.sections

    def plan_lookup(self, ctx: RequestContext) -> Prefetch | None:
        """For the limiter's script (`Rider`): this request's cache lookup, when it will make one."""
        rule = route_rule(ctx.route) if ctx.route is not None else None
        if rule is None or self._redis is None or not cacheable(ctx, rule):
            return None
        if "cache-control" in ctx.headers and cache_directives(ctx) != (True, True):
            return None
        key = cache_key(ctx)
        pre = Prefetch(*self._redis.keys(key), f"{self._replica}:{next(self._ids)}", int(rule.lock_s * 1000))
        pre.key, pre.ran = key, len(ctx.ran)
        return pre

    def abandon(self, lookup: Lookup, batch: SettleBatch) -> None:
        """(`Rider`) A lookup the request never reached this stage to use: release its lock in `batch`."""
        if lookup.took_lock:
            batch.unlock(lookup.lock_wire, lookup.token_wire)

    async def on_request(self, ctx: RequestContext) -> Reply | None:
        assert ctx.route is not None
        rule = route_rule(ctx.route)
        assert rule is not None
        carrier = ctx.piggyback
        pre = None
        if carrier is not None and isinstance(carrier.lookup, Prefetch):
            pre, carrier.lookup = carrier.lookup, None  # ours from now on
        if pre is not None and pre.ran >= 0 and _unchanged_since(ctx.ran, pre.ran):
            # The request is as the prefetch saw it: cacheable, readable, and under the same key.
            key, token, entry, leader, used = pre.key, pre.token, pre.entry, pre.took_lock, pre
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
                token, entry, leader, used = pre.token, pre.entry, pre.took_lock, pre
            else:
                used = None
                if pre is not None:
                    await self._drop(pre)
                token = f"{self._replica}:{next(self._ids)}"
                found = self.store.try_lookup(key, token, int(rule.lock_s * 1000))
                if found is None:
                    try:
                        found = await self.store.lookup(key, token, int(rule.lock_s * 1000))
                    except RedisUnavailable:
                        return self._status(ctx, "BYPASS")
                entry, leader = found
        if entry is None and not leader:  # another request is fetching it: wait for its answer
            entry = await self._wait(key, rule)
        return self._answer(ctx, rule, key, token, entry, leader, used)

    def _answer(self, ctx: RequestContext, rule: CacheRule, key: str, token: str, entry: bytes | None,
                leader: bool, lookup: Prefetch | None) -> Reply | None:
        """After the lookup (and any wait): a HIT, or a MISS this request fetches."""
        if entry is None and leader:
            self.flights[key] = None
            self._pending(ctx, Pending(key, rule, token, lookup))
            return self._status(ctx, "MISS")
        if entry is not None:
            hit = self._hit(ctx, entry)
            if hit is not None:
                return hit
        # The first miss failed or is too slow: go to the backend ourselves (and store what we get).
        self._pending(ctx, Pending(key, rule, None))
        return self._status(ctx, "MISS")

    async def _drop(self, pre: Prefetch) -> None:
        """A prefetched lookup this request will not use: release the lock it took, if any."""
        if pre.took_lock:
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
        ctx.cache_pending = pending
        ctx.collect_response = True

    @staticmethod
    def _status(ctx: RequestContext, status: str) -> None:
        assert ctx.route is not None
        ctx.cache_status = status
        ctx.response_headers[HEADER] = status
        cache_requests_by.get(ctx.route.name, status).inc()

    async def on_complete(self, ctx: RequestContext) -> None:
        pending, ctx.cache_pending = ctx.cache_pending, None
        if pending is None:
            return
        # The rate limiter completes after us and sends these writes with its settlement, when it can.
        carrier = ctx.piggyback
        batch = carrier.batch if carrier is not None else None
        entry = None
        try:
            body = _storable(ctx, pending.rule.max_bytes)
            if body is not None:
                entry = encode(body)
                ttl_ms = int(pending.rule.ttl_s * 1000)
                if batch is not None and self._redis is not None:
                    target = pending.lookup or self._redis.target(pending.key, pending.token)
                    self._redis.put_into(batch, target, entry, ttl_ms, pending.token is not None)
                elif not self.store.try_put(pending.key, entry, ttl_ms, pending.token):
                    await self.store.put(pending.key, entry, ttl_ms, pending.token)
            elif pending.token is not None:
                if batch is not None and self._redis is not None:
                    target = pending.lookup or self._redis.target(pending.key, pending.token)
                    batch.unlock(target.lock_wire, target.token_wire)
                elif not self.store.try_unlock(pending.key, pending.token):
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


def build_cache_stage(config: GatewayConfig, link: RedisLink | None) -> CacheStage | None:
    """The stage when any route caches, else None."""
    if not any(NAME in route.sections for route in config.routes):
        return None
    return CacheStage(config, link)
