"""What one request is checked against: a `Rule` per (limit, quota), built from the context.

Both limiter backends (Redis and in-memory) take a list of rules and answer with a `Decision`;
they fill each rule's `remaining`, `reset_ms` and `bucket` (where a token reservation landed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Protocol

from gateway.context import RequestContext
from gateway.ratelimit.config import LimitConfig, Quota

_MISSING = "_"  # a key part the request does not have (e.g. no tenant claim): one shared bucket


@dataclass(slots=True)
class Rule:
    limit: LimitConfig
    quota: Quota
    key: str
    cost: int
    remaining: int = 0
    reset_ms: int = 0
    bucket: int = 0
    spec: str = ""  # the Redis check's description of the quota (`quota_spec`), when the Planner made it

    @property
    def span_ms(self) -> int:
        return span_ms(self.limit, self.quota)


def span_ms(limit: LimitConfig, quota: Quota) -> int:
    """The window, or for a concurrency slot its lease."""
    return quota.window_ms or int(limit.lease_s * 1000)


def quota_spec(limit: LimitConfig, quota: Quota) -> str:
    """What the Redis check script needs to know of a quota, in one argument (see `lua.py`)."""
    kind = "c" if quota.kind == "concurrent" else "w"
    return f"{kind} {quota.limit} {span_ms(limit, quota)} {quota.width_ms}"


@dataclass(slots=True, frozen=True)
class Decision:
    admitted: bool
    denied: Rule | None = None
    retry_ms: int = 0


ADMITTED = Decision(True)  # the common answer, shared


@dataclass(slots=True)
class Settlement:
    """After the response: how a rule's reservation ends."""

    rule: Rule
    delta: int  # tokens: real usage minus reservation; unused for concurrency


class Limiter(Protocol):
    async def acquire(self, rules: list[Rule], member: str) -> Decision: ...

    async def settle(self, items: list[Settlement], member: str) -> None: ...

    async def renew(self, rules: list[Rule], member: str) -> None: ...


def _route_name(ctx: RequestContext) -> str | None:
    return ctx.route.name if ctx.route else None


# How each key part is read off the request (the config validated the part names).
_KEY_PARTS: dict[str, Callable[[RequestContext], str | None]] = {
    "subject": attrgetter("subject"), "tenant": attrgetter("tenant"), "api_key": attrgetter("api_key"),
    "client_ip": attrgetter("client_ip"), "route": _route_name, "model": attrgetter("model"),
}


def estimate_tokens(body: dict[str, Any] | None, output_estimate: int) -> int:
    """Tokens to reserve before forwarding: the prompt (about 4 characters a token) plus the output
    the request may produce (`max_tokens` x `n`, or the configured estimate)."""
    if not body:
        return output_estimate
    prompt = body.get("prompt")
    if type(prompt) is str and "messages" not in body and "input" not in body:
        chars = len(prompt)  # the common completion: one string prompt
    else:
        chars = _chars(body.get("messages")) + _chars(prompt) + _chars(body.get("input"))
        if "input" in body and "messages" not in body and "prompt" not in body:
            return (chars + 3) // 4  # embeddings produce no tokens
    out = body.get("max_completion_tokens") or body.get("max_tokens")
    if type(out) is not int:
        out = output_estimate
    n = body.get("n")
    return (chars + 3) // 4 + out * (n if type(n) is int and n > 0 else 1)


def _chars(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_chars(v) for v in value)
    if isinstance(value, dict):
        return _chars(value.get("content")) + _chars(value.get("text"))
    return 0


@dataclass(slots=True)
class _LimitPlan:
    """What a limit means for one route and tier, worked out once: its key readers, and per quota the
    Redis key prefix and the check's spec."""

    limit: LimitConfig
    parts: tuple[Callable[[RequestContext], str | None], ...]
    quotas: list[tuple[Quota, str, str]]


@dataclass(slots=True)
class RoutePlan:
    """A route's limits for one tier, worked out once; `rules` applies them to a request."""

    limits: list[_LimitPlan]
    concurrent: bool  # some quota is a concurrency slot: held until the request completes
    tokens: bool  # some quota counts LLM tokens: reserved now, settled after the response

    def rules(self, ctx: RequestContext) -> list[Rule]:
        rules: list[Rule] = []
        for entry in self.limits:
            parts = entry.parts
            ident = (parts[0](ctx) or _MISSING) if len(parts) == 1 else "|".join([p(ctx) or _MISSING for p in parts])
            tokens = -1  # this limit's token estimate of the request, computed on first use
            for quota, prefix, spec in entry.quotas:
                cost = 1
                if quota.kind == "tokens":
                    if tokens < 0:
                        tokens = estimate_tokens(ctx.body_json, entry.limit.token_estimate)
                    # A request bigger than the whole budget still runs, when the window is empty.
                    cost = min(tokens, quota.limit)
                rules.append(Rule(entry.limit, quota, prefix + ident, cost, 0, 0, 0, spec))
        return rules


class Planner:
    """Turns a route's limits and the caller's tier into a `RoutePlan`, kept per (route, tier)."""

    def __init__(self, key_prefix: str) -> None:
        self.key_prefix = key_prefix
        self._plans: dict[tuple[str, str | None], RoutePlan] = {}

    def plan(self, ctx: RequestContext) -> RoutePlan:
        route = ctx.route
        assert route is not None
        plan = self._plans.get((route.name, ctx.tier))
        if plan is None:
            plan = self._plans[(route.name, ctx.tier)] = self._plan(route.name, route.rate_limits, ctx.tier)
        return plan

    def _plan(self, route: str, limits: list[LimitConfig], tier: str | None) -> RoutePlan:
        # The route is the Redis Cluster hash tag: every key of one request shares a slot.
        tag = route.replace("{", "").replace("}", "")
        entries = [_LimitPlan(limit, tuple(_KEY_PARTS[p] for p in limit.key),
                              [(q, f"{self.key_prefix}:rl:{{{tag}}}:{limit.name}:{q.label}:", quota_spec(limit, q))
                               for q in limit.quotas_for(tier)])
                   for limit in limits]
        kinds = {q.kind for entry in entries for q, _, _ in entry.quotas}
        return RoutePlan(entries, "concurrent" in kinds, "tokens" in kinds)
