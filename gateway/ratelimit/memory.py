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
    """One sliding window's buckets (index -> count, oldest first), their sum, the oldest bucket
    (None: no bucket), and when the last of them leaves the window (ms): one object per key, so a
    rule costs one lookup."""

    __slots__ = ("buckets", "total", "oldest", "expires")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.total = 0
        self.oldest: int | None = None
        self.expires = 0.0

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


def _purge(slots: dict[str, float], now: float) -> int:
    """Drop expired concurrency leases; the slots left in use."""
    for member in [m for m, expiry in slots.items() if expiry <= now]:
        del slots[member]
    return len(slots)


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
        # One pass: each rule is charged as it admits. A refusal undoes the charges already made
        # (`_refuse`), so a refused request costs no quota anywhere; refusals are the rare case.
        for i, rule in enumerate(rules):
            q = rule.quota
            cost = rule.cost
            if not q.window_ms:  # a concurrency quota
                slots = self.slots.get(rule.key)
                if slots is None:
                    slots = self.slots[rule.key] = {}
                used = len(slots)
                # Expired leases (a request that never completed) only matter when the slots look
                # full: scanning every slot of every request would cost O(in flight) each time.
                if used + cost > q.limit:
                    used = _purge(slots, now)
                    if used + cost > q.limit:
                        return self._refuse(rules, i, 1000, member, now)
                slots[member] = now + rule.span_ms
                spent = used + cost
                rule.remaining = q.limit - spent if spent < q.limit else 0
                rule.reset_ms = 0
                continue
            window = self.windows.get(rule.key) or self._new_window(rule.key)
            width = q.width_ms
            rule.bucket = cur = int(now // width)
            live = cur - q.window_ms // width  # the oldest bucket still in the window
            if window.oldest is not None and window.oldest < live:
                window.expire(live)
            spent = window.total + cost
            if spent > q.limit:
                return self._refuse(rules, i, self._retry_ms(window, rule, now), member, now)
            if cost > 0:
                buckets = window.buckets
                buckets[cur] = buckets.get(cur, 0) + cost
                window.total = spent
                window.expires = now + q.window_ms + 2 * width
                if window.oldest is None:
                    window.oldest = cur
            rule.remaining = q.limit - spent if spent < q.limit else 0
            rule.reset_ms = int((window.oldest + q.window_ms // width + 1) * width - now) if spent > 0 else 0
        return ADMITTED

    def _refuse(self, rules: list[Rule], denied_at: int, retry: int, member: str, now: float) -> Decision:
        """Rule `denied_at` refused: undo what the rules before it charged, then report every rule's
        counts as they stand (what the RateLimit headers say)."""
        for k, rule in enumerate(rules):
            q = rule.quota
            if not q.window_ms:
                slots = self.slots.setdefault(rule.key, {})
                if k < denied_at:
                    slots.pop(member, None)
                elif k > denied_at and len(slots) + rule.cost > q.limit:
                    _purge(slots, now)  # as if it had been checked
                used = len(slots)
                rule.remaining = q.limit - used if used < q.limit else 0
                rule.reset_ms = 0
                continue
            window = self.windows.get(rule.key) or self._new_window(rule.key)
            width = q.width_ms
            rule.bucket = cur = int(now // width)
            if k < denied_at and rule.cost > 0:
                window.add(cur, -rule.cost)
            elif k > denied_at:
                window.expire(cur - q.window_ms // width)  # as if it had been checked
            used = window.total
            rule.remaining = q.limit - used if used < q.limit else 0
            if used > 0 and window.oldest is not None:
                rule.reset_ms = int((window.oldest + q.window_ms // width + 1) * width - now)
            else:
                rule.reset_ms = 0
        return Decision(False, rules[denied_at], retry)

    def _new_window(self, key: str) -> _Window:
        window = self.windows[key] = _Window()
        return window

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
            if window is not None:
                window.add(rule.bucket, item.delta)

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
