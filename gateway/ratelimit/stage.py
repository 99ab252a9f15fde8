"""The rate-limit stage: one limiter decision before forwarding, one settlement after the response.

With Redis (single node), both calls also carry the response cache's work for the same request when
its route caches (`gateway/redis/piggyback.py`): the check makes the lookup the cache plans
(`rider`), and the settlement carries the cache's writes (the request's `Piggyback`, whose batch
the cache stage, completing before this one, adds to). The settlement is posted, not awaited: one
awaited round trip per request.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from dataclasses import dataclass

from gateway.config.schema import GatewayConfig
from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.pipeline.stage import Stage
from gateway.ratelimit.config import NAME, route_limits
from gateway.ratelimit.headers import limit_headers, rejection
from gateway.ratelimit.memory import MemoryLimiter
from gateway.ratelimit.metrics import fallbacks_total, rejections_by
from gateway.ratelimit.redis_limiter import RedisLimiter
from gateway.ratelimit.rules import Check, Limiter, Planner, RoutePlan, estimate_tokens
from gateway.redis.config import redis_config
from gateway.redis.link import RedisLink, RedisUnavailable
from gateway.redis.piggyback import Piggyback, Rider
from gateway.redis.settle import SETTLE, SettleBatch
from gateway.upstream.forward import StreamTally

log = logging.getLogger("edgegw.ratelimit")


@dataclass(slots=True)
class Held:
    """What an admitted request holds until it completes: reservations and concurrency slots."""

    limiter: Limiter
    check: Check
    member: str
    plan: RoutePlan


class RateLimitStage(Stage):
    name = "ratelimit"
    rewrites_request = False

    def __init__(self, config: GatewayConfig, link: RedisLink | None = None) -> None:
        redis = redis_config(config)
        self.planner = Planner(redis.key_prefix if redis else "edgegw")
        self.local = MemoryLimiter()
        self.link = link
        self.remote = RedisLimiter(link) if link is not None else None
        # The response cache of the same policy version, when it shares the link on a single node: the
        # limiter's calls then carry its lookup and its writes (`gateway.redis.piggyback`).
        self.rider: Rider | None = None
        self._replica = uuid.uuid4().hex[:12]
        self._ids = itertools.count()
        self._held: dict[str, Held] = {}  # in flight with concurrency slots: their leases are renewed
        leases = lease_periods(config)
        self._renew_every_s = leases[0] / 3 if leases else None
        self._renewer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._renew_every_s is not None:
            self._renewer = asyncio.get_running_loop().create_task(self._renew_loop())

    async def stop(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()

    def enabled_for(self, ctx: RequestContext) -> bool:
        return ctx.route is not None and NAME in ctx.route.sections

    async def on_model_change(self, ctx: RequestContext) -> None:
        """A fallback to another model: limits keyed on `model` admit the request for it, after the
        reservation for the model before is released (tokens settled to 0; its request stays counted)."""
        held = ctx.limits_held
        if held is None or not any("model" in limit.key for limit, _ in held.plan.limits):
            return
        ctx.limits_held = None
        self._held.pop(held.member, None)
        if (held.plan.concurrent or held.plan.tokens) and not held.limiter.try_settle(held.check, held.member, 0):
            try:
                await held.limiter.settle(held.check, held.member, 0)
            except RedisUnavailable:
                pass  # the lease expires, and an unsettled reservation only errs on the safe side
        await self.on_request(ctx, first=False)

    async def on_request(self, ctx: RequestContext, first: bool = True) -> None:
        """The limiter's decision; the first one of a request (not a fallback's) also makes the cache's
        lookup (Redis)."""
        plan = self.planner.plan(ctx)
        check = plan.check(ctx)
        if check is None:
            return None  # the caller's tier lifts every limit of this route
        member = f"{self._replica}:{next(self._ids)}"
        limiter: Limiter
        lookup = None
        if self.remote is None:
            limiter = self.local
            admitted = self.local.try_acquire(check, member)
        else:
            rider = self.rider
            if first and rider is not None:
                lookup = rider.plan_lookup(ctx)
            try:
                limiter = self.remote
                admitted = await self.remote.acquire(check, member, lookup)
            except RedisUnavailable:
                limiter = self.local
                check = self._fallback(check)
                if not check.rules:
                    return None
                admitted = self.local.try_acquire(check, member)
        limit_headers(check, ctx.response_headers)
        if not admitted:
            assert ctx.route is not None and check.denied is not None
            rejections_by.get(ctx.route.name, check.denied.limit.name).inc()
            raise rejection(check)
        ctx.limits_held = held = Held(limiter, check, member, plan)
        if first and limiter is self.remote and self.remote.link.pipelined:
            # The cache stage takes the lookup, and adds its writes to our settlement call.
            ctx.piggyback = Piggyback(SettleBatch(), lookup)
        if plan.concurrent:
            self._held[member] = held
        return None

    def _fallback(self, check: Check) -> Check:
        """Redis is unavailable: each limit applies its `on_redis_error` mode."""
        modes = [rule.limit.on_redis_error for rule in check.rules]
        if "deny" in modes:
            fallbacks_total.labels("deny").inc()
            raise GatewayError(503, "rate limiter unavailable; retry shortly", "rate_limiter_unavailable",
                               headers={"retry-after": "1"})
        fallbacks_total.labels("local" if "local" in modes else "allow").inc()
        return check.subset([i for i, mode in enumerate(modes) if mode == "local"])

    async def on_complete(self, ctx: RequestContext) -> None:
        held, ctx.limits_held = ctx.limits_held, None
        if held is None:
            return
        plan = held.plan
        if plan.concurrent:
            self._held.pop(held.member, None)
        # From here on a stage completing after us must write on its own.
        carrier, ctx.piggyback = ctx.piggyback, None
        settles = plan.concurrent or plan.tokens  # (requests-only limits have nothing to settle)
        used = _used_tokens(ctx, held.check) if plan.tokens else None
        if carrier is None or self.remote is None:
            if settles and not held.limiter.try_settle(held.check, held.member, used):
                try:
                    await held.limiter.settle(held.check, held.member, used)
                except RedisUnavailable:
                    pass  # the lease expires, and an unsettled reservation only errs on the safe side
            return
        batch, rider = carrier.batch, self.rider
        if carrier.lookup is not None and rider is not None:
            rider.abandon(carrier.lookup, batch)  # the cache stage never took it (the request failed before)
        if settles:
            self.remote.settle_into(batch, held.check, held.member, used)
        if batch.keys:
            # Nobody waits for it: merged with other requests' settlements into one call.
            self.remote.link.post(SETTLE, batch.keys, batch.args, op="settle")

    async def _renew_loop(self) -> None:
        assert self._renew_every_s is not None
        while True:
            await asyncio.sleep(self._renew_every_s)
            for member, held in list(self._held.items()):
                try:
                    await held.limiter.renew([r for r in held.check.rules if not r.window_ms], member)
                except RedisUnavailable:
                    continue
                except Exception:
                    log.exception("renewing concurrency leases failed")


# The request reached a backend and no answer came back: the backend may have done the work.
_UNANSWERED = frozenset({"upstream_timeout", "client_disconnected"})


def _used_tokens(ctx: RequestContext, check: Check) -> int | None:
    """Tokens to settle reservations to (None: keep them as reserved). Tokens are charged when
    delivered (docs/ratelimit-cache.md): the real usage when the backend reports it; for a stream, at
    least what it delivered; the whole reservation for a request that reached a backend and got no
    answer; nothing for one that never reached a backend or that a backend refused."""
    if ctx.cache_status == "HIT":
        return 0  # answered from the cache: no backend tokens spent
    if ctx.usage is not None:
        return ctx.usage.total_tokens
    tally: StreamTally | None = ctx.streamed
    if tally is not None:  # a streamed answer started
        delivered = _prompt_tokens(ctx) + tally.events
        if tally.complete and ctx.error is None:
            return delivered if delivered > max(check.costs) else None
        return delivered  # ended early (client gone, backend died): what it sent
    if ctx.error is None and 200 <= ctx.status < 300:
        return None
    if ctx.attempts and ctx.error in _UNANSWERED:
        return None
    return 0


def _prompt_tokens(ctx: RequestContext) -> int:
    """The request's prompt, estimated as its reservation was (output tokens left out)."""
    body = ctx.body_json or {}
    return estimate_tokens({k: body[k] for k in ("prompt", "messages", "input") if k in body}, 0)


def lease_periods(config: GatewayConfig) -> tuple[float, ...]:
    """The `lease_s` of every limit with a concurrency quota, shortest first (leases are renewed at a
    third of the shortest)."""
    return tuple(sorted(lim.lease_s for route in config.routes for lim in route_limits(route)
                        if any(q.kind == "concurrent" for qs in (lim.quotas, *lim.tiers.values()) for q in qs)))


def build_ratelimit_stage(config: GatewayConfig, link: RedisLink | None) -> RateLimitStage | None:
    """The stage when any route has limits, else None."""
    if not any(NAME in route.sections for route in config.routes):
        return None
    return RateLimitStage(config, link)
