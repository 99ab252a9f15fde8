"""The in-memory limiter: the Lua scripts' algorithm in Python, exact within one process.

Used as the embedded default (no `redis:` configured) and as the `on_redis_error: local` fallback.
Single-threaded asyncio and no awaits inside `acquire` make each decision atomic.

Time is the monotonic clock (one process needs no agreement with others), so a window's buckets are
created in time order: the oldest is the first in its dict, and a running total per window replaces
summing the buckets on every request.
"""

from __future__ import annotations

import time

from gateway.ratelimit.rules import ADMITTED, Decision, Rule, Settlement


def now_ms() -> float:
    """The in-memory limiter's clock."""
    return time.monotonic() * 1000.0


class MemoryLimiter:
    def __init__(self) -> None:
        self.windows: dict[str, dict[int, int]] = {}  # key -> bucket -> count, oldest bucket first
        self.totals: dict[str, int] = {}  # key -> sum of its buckets
        self.slots: dict[str, dict[str, float]] = {}  # key -> request id -> lease expiry (ms)
        self.expires: dict[str, float] = {}  # window key -> when its last bucket leaves the window (ms)
        self._last_sweep = 0.0

    async def acquire(self, rules: list[Rule], member: str) -> Decision:
        return self.acquire_now(rules, member, now_ms())

    def acquire_now(self, rules: list[Rule], member: str, now: float) -> Decision:
        self._maybe_sweep(now)
        decision = ADMITTED
        used: list[int] = []
        oldest: list[int | None] = []
        for rule in rules:
            q = rule.quota
            if q.kind == "concurrent":
                slots = self.slots.get(rule.key)
                if slots is None:
                    slots = self.slots[rule.key] = {}
                # Expired leases (a request that never completed) only matter when the slots look
                # full: scanning every slot of every request would cost O(in flight) each time.
                if len(slots) + rule.cost > q.limit:
                    for m in [m for m, exp in slots.items() if exp <= now]:
                        del slots[m]
                u = len(slots)
                used.append(u)
                oldest.append(None)
                if u + rule.cost > q.limit and decision.admitted:
                    decision = Decision(False, rule, 1000)
                continue
            width = q.width_ms
            cur = int(now // width)
            nb = q.window_ms // width
            buckets = self.windows.get(rule.key)
            if buckets is None:
                buckets = self.windows[rule.key] = {}
                self.totals[rule.key] = 0
            first: int | None = None
            if buckets:
                first = next(iter(buckets))
                while first is not None and first < cur - nb:
                    self.totals[rule.key] -= buckets.pop(first)
                    first = next(iter(buckets), None)
            rule.bucket = cur
            u = self.totals[rule.key]
            used.append(u)
            oldest.append(first)
            if u + rule.cost > q.limit and decision.admitted:
                retry = q.window_ms
                need, freed = u + rule.cost - q.limit, 0
                for b in buckets:  # oldest first
                    freed += buckets[b]
                    if freed >= need:
                        retry = int((b + nb + 1) * width - now)
                        break
                decision = Decision(False, rule, retry)
        admitted = decision.admitted
        for rule, u, first in zip(rules, used, oldest, strict=True):
            q = rule.quota
            spent = u
            if admitted:
                spent += rule.cost
                if q.kind == "concurrent":
                    self.slots[rule.key][member] = now + rule.span_ms
                elif rule.cost > 0:
                    buckets = self.windows[rule.key]
                    buckets[rule.bucket] = buckets.get(rule.bucket, 0) + rule.cost
                    self.totals[rule.key] += rule.cost
                    self.expires[rule.key] = now + q.window_ms + 2 * q.width_ms
                    if first is None:
                        first = rule.bucket
            rule.remaining = q.limit - spent if spent < q.limit else 0
            if q.kind != "concurrent" and spent > 0 and first is not None:
                rule.reset_ms = int((first + q.window_ms // q.width_ms + 1) * q.width_ms - now)
            else:
                rule.reset_ms = 0
        return decision

    async def settle(self, items: list[Settlement], member: str) -> None:
        for item in items:
            rule = item.rule
            if rule.quota.kind == "concurrent":
                slots = self.slots.get(rule.key)
                if slots is not None:
                    slots.pop(member, None)
                continue
            buckets = self.windows.get(rule.key)
            if buckets is not None and rule.bucket in buckets:
                old = buckets[rule.bucket]
                value = old + item.delta
                if value <= 0:
                    del buckets[rule.bucket]
                    self.totals[rule.key] -= old
                else:
                    buckets[rule.bucket] = value
                    self.totals[rule.key] += item.delta

    async def renew(self, rules: list[Rule], member: str) -> None:
        now = now_ms()
        for rule in rules:
            slots = self.slots.get(rule.key)
            if slots is not None and member in slots:
                slots[member] = now + rule.span_ms

    def _maybe_sweep(self, now: float) -> None:
        """Drop keys nobody used for a while, so memory follows the active callers only."""
        if now - self._last_sweep < 60_000:
            return
        self._last_sweep = now
        for key in [k for k, v in self.windows.items() if not v or self.expires.get(k, 0) < now]:
            del self.windows[key]
            self.totals.pop(key, None)
            self.expires.pop(key, None)
        for key in [k for k, v in self.slots.items() if not v]:
            del self.slots[key]
