"""What one request is checked against: a `Check` of `Rule`s (one per limit and quota), built from
the context by the route's `RoutePlan`.

Rules are immutable and shared: a plan keeps the rules of each caller it has seen (their keys are
worked out once per caller, not per request). What varies per request lives in the `Check`: the
costs, and the limiter's answer, laid out as the Redis check script returns it.
"""

from __future__ import annotations

from operator import attrgetter
from typing import Any, Protocol

from gateway.context import RequestContext
from gateway.ratelimit.config import LimitConfig, Quota, route_limits

_MISSING = "_"  # a key part the request does not have (e.g. no tenant claim): one shared bucket
_CALLERS_MAX = 10_000  # rules kept per plan (callers); past this the plan forgets them and starts over

# How each key part is read off the request (the config validated the part names; the stage runs
# only on routed requests, so `route` is set).
_KEY_PARTS = {"subject": "subject", "tenant": "tenant", "api_key": "api_key", "client_ip": "client_ip",
              "route": "route.name", "model": "model"}
# Parts naming a caller as its identity provider does: meaningful only within that issuer, so a key
# with any of them is scoped by the issuer too (the same `sub` from two IdPs is two callers, and
# callers without the claim share a bucket only with their own issuer's).
_CALLER_PARTS = frozenset({"subject", "tenant", "api_key"})


def span_ms(limit: LimitConfig, quota: Quota) -> int:
    """The window, or for a concurrency slot its lease."""
    return quota.window_ms or int(limit.lease_s * 1000)


def quota_spec(limit: LimitConfig, quota: Quota) -> str:
    """What the Redis check script needs to know of a quota, in one argument (see `lua.py`)."""
    kind = "c" if quota.kind == "concurrent" else "w"
    return f"{kind} {quota.limit} {span_ms(limit, quota)} {quota.width_ms}"


class Rule:
    """One quota of one limit for one caller (its limiter `key`), with the quota's numbers copied
    flat for the limiters' hot loops. `window_ms` is 0 for a concurrency quota."""

    __slots__ = ("limit", "quota", "key", "spec", "cap", "window_ms", "width_ms", "buckets", "span_ms", "tokens",
                 "headers", "per_unit")

    def __init__(self, limit: LimitConfig, quota: Quota, key: str) -> None:
        self.limit = limit
        self.quota = quota
        self.key = key
        self.spec = quota_spec(limit, quota)
        self.cap = quota.limit
        self.window_ms = quota.window_ms
        self.width_ms = quota.width_ms
        self.buckets = quota.window_ms // quota.width_ms if quota.width_ms else 0  # per window
        self.span_ms = span_ms(limit, quota)
        self.tokens = quota.kind == "tokens"
        self.headers = limit.headers  # which RateLimit headers describe it: draft | ietf | none
        self.per_unit = 1.0 / quota.limit if quota.limit else 0.0  # remaining x this = share left

    def __repr__(self) -> str:
        return f"Rule({self.key!r}, {self.spec!r})"


class Check:
    """One request's rules, what each costs it, and the limiter's answer (filled by `acquire`).

    The answer is kept flat, laid out as the Redis check script replies, so that reply is used as
    is: admitted (1/0), the denied rule (1-based, 0 = none), retry_ms, then per rule: remaining,
    reset_ms, and the bucket a window's charge went to (where a token reservation is settled later);
    then whatever the script appended (`extra`). Only the methods below read or write it.
    """

    __slots__ = ("rules", "costs", "_out")

    def __init__(self, rules: tuple[Rule, ...], costs: list[int]) -> None:
        self.rules = rules
        self.costs = costs
        self._out: list[int] = []  # (after the rules, `extra` may hold other values: a lookup's entry)

    # -- the answer, read

    @property
    def admitted(self) -> bool:
        return bool(self._out[0])

    @property
    def denied_at(self) -> int:
        """The index of the rule that refused the request; -1 when admitted."""
        return self._out[1] - 1

    @property
    def denied(self) -> Rule | None:
        return self.rules[self._out[1] - 1] if self._out[1] else None

    @property
    def retry_ms(self) -> int:
        return self._out[2]

    def remaining(self, i: int) -> int:
        return self._out[3 + 3 * i]

    def remaining_all(self) -> list[int]:
        """Every rule's `remaining`, in rule order."""
        return self._out[3:3 + 3 * len(self.rules):3]

    def reset_ms(self, i: int) -> int:
        return self._out[4 + 3 * i]

    def bucket(self, i: int) -> int:
        return self._out[5 + 3 * i]

    def extra(self) -> list[Any]:
        """What the script replied after the rules' values (a lookup made with the check)."""
        return self._out[3 + 3 * len(self.rules):]

    # -- the answer, written

    def take_reply(self, reply: list[Any]) -> None:
        """The Redis check script's reply, as it came."""
        self._out = reply

    def admit(self) -> None:
        """Start an answer: admitted, every rule's values 0 until `record`ed."""
        self._out = [1, 0, 0] + [0] * (3 * len(self.rules))

    def record(self, i: int, remaining: int, reset_ms: int, bucket: int) -> None:
        """Rule `i`'s values after the decision."""
        out, j = self._out, 3 + 3 * i
        out[j] = remaining
        out[j + 1] = reset_ms
        out[j + 2] = bucket

    def refuse(self, i: int, retry_ms: int) -> None:
        """Rule `i` refused the request; it may be retried after `retry_ms`."""
        out = self._out
        out[0], out[1], out[2] = 0, i + 1, retry_ms

    def subset(self, keep: list[int]) -> Check:
        """A check of some of these rules (a limit's fallback when Redis is unavailable)."""
        return Check(tuple(self.rules[i] for i in keep), [self.costs[i] for i in keep])


class Limiter(Protocol):
    """A limiter's decisions. A limiter that can decide without awaiting does so in the `try_` forms
    (the in-memory one: an awaited coroutine per call would cost more than the work); one that cannot
    (Redis) answers None / False there, and the caller awaits the async form."""

    def try_acquire(self, check: Check, member: str) -> bool | None:
        """`acquire` without awaiting; None when this limiter has to await."""
        ...

    async def acquire(self, check: Check, member: str) -> bool:
        """Charge every rule, or none: True when admitted. Fills the check's answer either way."""
        ...

    def try_settle(self, check: Check, member: str, used: int | None) -> bool:
        """`settle` without awaiting; False when this limiter has to await (nothing done)."""
        ...

    async def settle(self, check: Check, member: str, used: int | None) -> None:
        """After the response: release the check's concurrency slots and settle its token
        reservations to `used` tokens (None: keep each reservation as it is)."""
        ...

    async def renew(self, rules: list[Rule], member: str) -> None:
        """Extend the leases of concurrency slots still held."""
        ...


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


class RoutePlan:
    """A route's limits for one tier, worked out once; `check` applies them to a request."""

    def __init__(self, limits: list[tuple[LimitConfig, tuple[Quota, ...]]], key_prefix: str) -> None:
        self.limits = [(limit, quotas) for limit, quotas in limits if quotas]
        self.prefix = key_prefix
        quotas = [q for _, qs in self.limits for q in qs]
        self.concurrent = any(q.kind == "concurrent" for q in quotas)  # slots held until completion
        self.tokens = any(q.kind == "tokens" for q in quotas)  # reserved now, settled after the response
        self._width = [len(limit.key) for limit, _ in self.limits]
        self._scoped = [not _CALLER_PARTS.isdisjoint(limit.key) for limit, _ in self.limits]
        parts = [_KEY_PARTS[p] for limit, _ in self.limits for p in limit.key]
        if any(self._scoped):
            parts.append("issuer")  # last: read once for every scoped limit
        self._parts = len(parts)
        # Every key part of every limit in one C call: a value (one part) or a tuple (several).
        self._identity = attrgetter(*parts) if parts else None
        self._costs = [1] * len(quotas)
        self._token_costs = [(i, limit.token_estimate, q.limit) for i, (limit, q) in
                             enumerate((limit, q) for limit, qs in self.limits for q in qs) if q.kind == "tokens"]
        self._callers: dict[Any, tuple[Rule, ...]] = {}

    def check(self, ctx: RequestContext) -> Check | None:
        """This request's check; None when the caller's tier lifts every limit of the route."""
        if self._identity is None:
            return None
        identity = self._identity(ctx)
        rules = self._callers.get(identity)
        if rules is None:
            rules = self._remember(identity)
        costs = self._costs.copy()
        if self._token_costs:
            estimate, tokens = -1, 0
            for i, output_estimate, cap in self._token_costs:
                if output_estimate != estimate:
                    estimate, tokens = output_estimate, estimate_tokens(ctx.body_json, output_estimate)
                # A request bigger than the whole budget still runs, when the window is empty.
                costs[i] = tokens if tokens < cap else cap
        return Check(rules, costs)

    def _remember(self, identity: Any) -> tuple[Rule, ...]:
        values = identity if self._parts > 1 else (identity,)
        issuer = (values[-1] or "") if self._parts > sum(self._width) else ""
        rules: list[Rule] = []
        start = 0
        for (limit, quotas), width, scoped in zip(self.limits, self._width, self._scoped, strict=True):
            caller = "|".join([v or _MISSING for v in values[start:start + width]])
            if scoped:  # length-prefixed: no issuer name and subject can combine into another's
                caller = f"{len(issuer)}:{issuer}/{caller}"
            start += width
            rules += [Rule(limit, q, f"{self.prefix}{limit.name}:{q.label}:{caller}") for q in quotas]
        if len(self._callers) >= _CALLERS_MAX:
            self._callers.clear()  # cheaper than LRU bookkeeping on every request; rebuilt on demand
        found = self._callers[identity] = tuple(rules)
        return found


class Planner:
    """Turns a route's limits and the caller's tier into a `RoutePlan`, kept per (route, tier)."""

    def __init__(self, key_prefix: str) -> None:
        self.key_prefix = key_prefix
        # With the route object the plan was made for: a policy reload brings a new one.
        self._plans: dict[tuple[str, str | None], tuple[Any, RoutePlan]] = {}

    def plan(self, ctx: RequestContext) -> RoutePlan:
        route = ctx.route
        assert route is not None
        found = self._plans.get((route.name, ctx.tier))
        if found is not None and found[0] is route:
            return found[1]
        # The route is the Redis Cluster hash tag: every key of one request shares a slot.
        tag = route.name.replace("{", "").replace("}", "")
        plan = RoutePlan([(limit, limit.quotas_for(ctx.tier)) for limit in route_limits(route)],
                         f"{self.key_prefix}:rl:{{{tag}}}:")
        self._plans[(route.name, ctx.tier)] = (route, plan)
        return plan
