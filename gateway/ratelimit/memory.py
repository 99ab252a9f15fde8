"""The in-memory limiter: the Lua scripts' algorithm in Python, exact within one process.

Used as the embedded default (no `redis:` configured) and as the `on_redis_error: local` fallback.
Nothing here waits, so the stage calls the `try_` forms (`Limiter`), and single-threaded asyncio
makes each decision atomic.

Time is the monotonic clock (one process needs no agreement with others), so a window's buckets are
created in time order: the oldest is the first in its dict, and a running total per window replaces
summing the buckets on every request.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gateway.ratelimit.rules import Check, Rule

_SWEEP_MS = 60_000


def now_ms() -> int:
    """The in-memory limiter's clock (integer milliseconds: cheaper arithmetic than floats)."""
    return time.monotonic_ns() // 1_000_000


class _Window:
    """One sliding window's buckets (index -> count, oldest first), their sum, and the oldest bucket
    (None: no bucket): one object per key, so a rule costs one lookup."""

    __slots__ = ("buckets", "total", "oldest", "width", "window")

    def __init__(self, rule: Rule) -> None:
        self.buckets: dict[int, int] = {}
        self.total = 0
        self.oldest: int | None = None
        self.width = rule.width_ms  # (what the sweep needs to know)
        self.window = rule.window_ms

    def idle(self, now: int) -> bool:
        """Whether the newest bucket has left the window: the key counts nothing any more."""
        newest = next(reversed(self.buckets), None)
        return newest is None or (newest + 1) * self.width + self.window < now

    def expire(self, live: int) -> None:
        """Drop the buckets older than `live` (the oldest still in the window)."""
        buckets, first = self.buckets, self.oldest
        while first is not None and first < live:
            self.total -= buckets.pop(first)
            first = next(iter(buckets), None)
        self.oldest = first

    def add(self, bucket: int, delta: int) -> None:
        """Change an existing bucket's count; at zero or below it goes (settlements, refunds)."""
        old = self.buckets.get(bucket)
        if old is None:
            return
        value = old + delta
        if value <= 0:
            del self.buckets[bucket]
            self.total -= old
            if bucket == self.oldest:
                self.oldest = next(iter(self.buckets), None)
        else:
            self.buckets[bucket] = value
            self.total += delta


def _purge(slots: dict[str, int], now: int) -> int:
    """Drop expired concurrency leases; the slots left in use."""
    for member in [m for m, expiry in slots.items() if expiry <= now]:
        del slots[member]
    return len(slots)


class MemoryLimiter:
    """A `Limiter` in this process's memory; `clock` is its time in integer milliseconds."""

    def __init__(self, clock: Callable[[], int] = now_ms) -> None:
        self.windows: dict[str, _Window] = {}
        self.slots: dict[str, dict[str, int]] = {}  # key -> request id -> lease expiry (ms)
        self.clock = clock
        self._last_sweep = 0

    async def acquire(self, check: Check, member: str) -> bool:
        return self.try_acquire(check, member)

    def try_acquire(self, check: Check, member: str) -> bool:
        now = self.clock()
        if now - self._last_sweep >= _SWEEP_MS:
            self._sweep(now)
        costs = check.costs
        check.admit()
        record = check.record
        # One pass: each rule is charged as it admits. A refusal undoes the charges already made
        # (`_refuse`), so a refused request costs no quota anywhere; refusals are the rare case.
        for i, rule in enumerate(check.rules):
            cost = costs[i]
            cap = rule.cap
            if not rule.window_ms:  # a concurrency quota
                slots = self.slots.get(rule.key)
                if slots is None:
                    slots = self.slots[rule.key] = {}
                used = len(slots)
                # Expired leases (a request that never completed) only matter when the slots look
                # full: scanning every slot of every request would cost O(in flight) each time.
                if used + cost > cap:
                    used = _purge(slots, now)
                    if used + cost > cap:
                        return self._refuse(check, i, 1000, member, now)
                slots[member] = now + rule.span_ms
                spent = used + cost
                record(i, cap - spent if spent < cap else 0, 0, 0)
                continue
            window = self.windows.get(rule.key) or self._new_window(rule)
            width = rule.width_ms
            cur = now // width
            oldest = window.oldest
            if oldest is not None and oldest < cur - rule.buckets:
                window.expire(cur - rule.buckets)  # (the oldest bucket still in the window)
                oldest = window.oldest
            spent = window.total + cost
            if spent > cap:
                return self._refuse(check, i, self._retry_ms(window, rule, cost, now), member, now)
            if cost > 0:
                buckets = window.buckets
                buckets[cur] = buckets.get(cur, 0) + cost
                window.total = spent
                if oldest is None:
                    window.oldest = oldest = cur
            record(i, cap - spent if spent < cap else 0,
                   (oldest + rule.buckets + 1) * width - now if oldest is not None else 0, cur)
        return True

    def _refuse(self, check: Check, denied_at: int, retry: int, member: str, now: int) -> bool:
        """Rule `denied_at` refused: undo what the rules before it charged, then report every rule's
        counts as they stand (what the RateLimit headers say)."""
        check.refuse(denied_at, retry)
        for k, rule in enumerate(check.rules):
            cost = check.costs[k]
            if not rule.window_ms:
                slots = self.slots.setdefault(rule.key, {})
                if k < denied_at:
                    slots.pop(member, None)
                elif k > denied_at and len(slots) + cost > rule.cap:
                    _purge(slots, now)  # as if it had been checked
                used = len(slots)
                check.record(k, rule.cap - used if used < rule.cap else 0, 0, 0)
                continue
            window = self.windows.get(rule.key) or self._new_window(rule)
            cur = now // rule.width_ms
            if k < denied_at and cost > 0:
                window.add(cur, -cost)
            elif k > denied_at:
                window.expire(cur - rule.buckets)  # as if it had been checked
            used = window.total
            reset = 0
            if used > 0 and window.oldest is not None:
                reset = (window.oldest + rule.buckets + 1) * rule.width_ms - now
            check.record(k, rule.cap - used if used < rule.cap else 0, reset, cur)
        return False

    def _new_window(self, rule: Rule) -> _Window:
        window = self.windows[rule.key] = _Window(rule)
        return window

    @staticmethod
    def _retry_ms(window: _Window, rule: Rule, cost: int, now: int) -> int:
        """When enough of the oldest counts leave the window for this request to fit."""
        need, freed = window.total + cost - rule.cap, 0
        for b, count in window.buckets.items():  # oldest first
            freed += count
            if freed >= need:
                return (b + rule.buckets + 1) * rule.width_ms - now
        return rule.window_ms

    async def settle(self, check: Check, member: str, used: int | None) -> None:
        self.try_settle(check, member, used)

    def try_settle(self, check: Check, member: str, used: int | None) -> bool:
        for i, rule in enumerate(check.rules):
            if not rule.window_ms:
                slots = self.slots.get(rule.key)
                if slots is not None:
                    slots.pop(member, None)
            elif used is not None and rule.tokens:
                delta = used - check.costs[i]
                window = self.windows.get(rule.key)
                if delta and window is not None:
                    window.add(check.bucket(i), delta)
        return True

    async def renew(self, rules: list[Rule], member: str) -> None:
        now = self.clock()
        for rule in rules:
            slots = self.slots.get(rule.key)
            if slots is not None and member in slots:
                slots[member] = now + rule.span_ms

    def _sweep(self, now: int) -> None:
        """Drop keys nobody used for a while, so memory follows the active callers only."""
        self._last_sweep = now
        for key in [k for k, w in self.windows.items() if w.idle(now)]:
            del self.windows[key]
        for key in [k for k, v in self.slots.items() if not v]:
            del self.slots[key]
