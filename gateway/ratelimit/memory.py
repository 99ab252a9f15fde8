"""The in-memory limiter: the Lua scripts' algorithm in Python, exact within one process.

Used as the embedded default (no `redis:` configured) and as the `on_redis_error: local` fallback.
Single-threaded asyncio and no awaits inside `acquire` make each decision atomic.
"""

from __future__ import annotations

import time

from gateway.ratelimit.rules import Decision, Rule, Settlement


class MemoryLimiter:
    def __init__(self) -> None:
        self.windows: dict[str, dict[int, int]] = {}  # key -> bucket -> count
        self.slots: dict[str, dict[str, float]] = {}  # key -> request id -> lease expiry (ms)
        self.expires: dict[str, float] = {}  # window key -> when its last bucket leaves the window (ms)
        self._last_sweep = 0.0

    async def acquire(self, rules: list[Rule], member: str) -> Decision:
        return self.acquire_now(rules, member, time.time() * 1000.0)

    def acquire_now(self, rules: list[Rule], member: str, now: float) -> Decision:
        self._maybe_sweep(now)
        decision = Decision(True)
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
            first: int | None = None
            if buckets:
                first = min(buckets)
                if first < cur - nb:
                    for b in [b for b in buckets if b < cur - nb]:
                        del buckets[b]
                    first = min(buckets) if buckets else None
            rule.bucket = cur
            u = sum(buckets.values())
            used.append(u)
            oldest.append(first)
            if u + rule.cost > q.limit and decision.admitted:
                retry = q.window_ms
                need, freed = u + rule.cost - q.limit, 0
                for b in sorted(buckets):
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
                value = buckets[rule.bucket] + item.delta
                if value <= 0:
                    del buckets[rule.bucket]
                else:
                    buckets[rule.bucket] = value

    async def renew(self, rules: list[Rule], member: str) -> None:
        now = time.time() * 1000.0
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
            self.expires.pop(key, None)
        for key in [k for k, v in self.slots.items() if not v]:
            del self.slots[key]
