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

_SWEEP_MS = 60_000


def now_ms() -> float:
    """The in-memory limiter's clock."""
    return time.monotonic() * 1000.0


class _Window:
    """One sliding window's buckets (index -> count, oldest first), their sum, and when the last of
    them leaves the window (ms): one object per key, so a rule costs one lookup."""

    __slots__ = ("buckets", "total", "expires")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.total = 0
        self.expires = 0.0


class MemoryLimiter:
    def __init__(self) -> None:
        self.windows: dict[str, _Window] = {}
        self.slots: dict[str, dict[str, float]] = {}  # key -> request id -> lease expiry (ms)
        self._last_sweep = 0.0

    async def acquire(self, rules: list[Rule], member: str) -> Decision:
        return self.acquire_now(rules, member, now_ms())

    def acquire_now(self, rules: list[Rule], member: str, now: float) -> Decision:
        if now - self._last_sweep >= _SWEEP_MS:
            self._sweep(now)
        denied: Rule | None = None
        retry = 0
        # Every rule is checked (its expired counts dropped) before any is charged: a refused
        # request costs no quota anywhere.
        states: list[_Window | dict[str, float]] = []
        for rule in rules:
            q = rule.quota
            if not q.window_ms:  # a concurrency quota
                slots = self.slots.get(rule.key)
                if slots is None:
                    slots = self.slots[rule.key] = {}
                states.append(slots)
                # Expired leases (a request that never completed) only matter when the slots look
                # full: scanning every slot of every request would cost O(in flight) each time.
                if len(slots) + rule.cost > q.limit:
                    for m in [m for m, exp in slots.items() if exp <= now]:
                        del slots[m]
                    if len(slots) + rule.cost > q.limit and denied is None:
                        denied, retry = rule, 1000
                continue
            window = self.windows.get(rule.key)
            if window is None:
                window = self.windows[rule.key] = _Window()
            states.append(window)
            width = q.width_ms
            rule.bucket = cur = int(now // width)
            buckets = window.buckets
            if buckets:
                live = cur - q.window_ms // width  # the oldest bucket still in the window
                first = next(iter(buckets))
                while first is not None and first < live:
                    window.total -= buckets.pop(first)
                    first = next(iter(buckets), None)
            if window.total + rule.cost > q.limit and denied is None:
                denied, retry = rule, self._retry_ms(window, rule, now)
        admitted = denied is None
        for rule, state in zip(rules, states, strict=True):
            q = rule.quota
            if type(state) is dict:  # concurrency: what the headers report is the slots in use
                spent = len(state)
                if admitted:
                    spent += rule.cost
                    state[member] = now + rule.span_ms
                rule.remaining = q.limit - spent if spent < q.limit else 0
                rule.reset_ms = 0
                continue
            cost = rule.cost
            if admitted and cost > 0:
                buckets = state.buckets
                buckets[rule.bucket] = buckets.get(rule.bucket, 0) + cost
                state.total += cost
                state.expires = now + q.window_ms + 2 * q.width_ms
            spent = state.total
            rule.remaining = q.limit - spent if spent < q.limit else 0
            if spent > 0 and state.buckets:
                rule.reset_ms = int((next(iter(state.buckets)) + q.window_ms // q.width_ms + 1) * q.width_ms - now)
            else:
                rule.reset_ms = 0
        return ADMITTED if admitted else Decision(False, denied, retry)

    @staticmethod
    def _retry_ms(window: _Window, rule: Rule, now: float) -> int:
        """When enough of the oldest counts leave the window for this request to fit."""
        q = rule.quota
        nb = q.window_ms // q.width_ms
        need, freed = window.total + rule.cost - q.limit, 0
        for b, count in window.buckets.items():  # oldest first
            freed += count
            if freed >= need:
                return int((b + nb + 1) * q.width_ms - now)
        return q.window_ms

    async def settle(self, items: list[Settlement], member: str) -> None:
        self.settle_now(items, member)

    def settle_now(self, items: list[Settlement], member: str) -> None:
        for item in items:
            rule = item.rule
            if not rule.quota.window_ms:
                slots = self.slots.get(rule.key)
                if slots is not None:
                    slots.pop(member, None)
                continue
            window = self.windows.get(rule.key)
            if window is not None and rule.bucket in window.buckets:
                old = window.buckets[rule.bucket]
                value = old + item.delta
                if value <= 0:
                    del window.buckets[rule.bucket]
                    window.total -= old
                else:
                    window.buckets[rule.bucket] = value
                    window.total += item.delta

    async def renew(self, rules: list[Rule], member: str) -> None:
        now = now_ms()
        for rule in rules:
            slots = self.slots.get(rule.key)
            if slots is not None and member in slots:
                slots[member] = now + rule.span_ms

    def _sweep(self, now: float) -> None:
        """Drop keys nobody used for a while, so memory follows the active callers only."""
        self._last_sweep = now
        for key in [k for k, w in self.windows.items() if not w.buckets or w.expires < now]:
            del self.windows[key]
        for key in [k for k, v in self.slots.items() if not v]:
            del self.slots[key]
