"""The Redis limiter: every rule of a request in one EVALSHA (exact across replicas)."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from gateway.ratelimit.lua import CHECK, SETTLE
from gateway.ratelimit.redis_client import RedisLink
from gateway.ratelimit.rules import Decision, Rule, Settlement


class RedisLimiter:
    """Raises `RedisUnavailable` when Redis does not answer within the link's deadline."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        link.register(CHECK)
        link.register(SETTLE)

    async def acquire(self, rules: list[Rule], member: str) -> Decision:
        keys: list[str] = []
        args: list[Any] = [member]
        for rule in rules:
            q = rule.quota
            keys.append(rule.key)
            args += ("c" if q.kind == "concurrent" else "w", q.limit, rule.span_ms, q.width_ms, rule.cost)
        out = await self.link.run(CHECK, keys, args, op="ratelimit")
        for i, rule in enumerate(rules):
            rule.remaining, rule.reset_ms, rule.bucket = int(out[3 + 3 * i]), int(out[4 + 3 * i]), int(out[5 + 3 * i])
        if out[0]:
            return Decision(True)
        return Decision(False, rules[int(out[1]) - 1], int(out[2]))

    async def settle(self, items: list[Settlement], member: str) -> None:
        keys: list[str] = []
        args: list[Any] = []
        for item in items:
            keys.append(item.rule.key)
            if item.rule.quota.kind == "concurrent":
                args += ("c", member, 0)
            else:
                args += ("t", item.rule.bucket, item.delta)
        await self.link.run(SETTLE, keys, args, op="settle")

    async def renew(self, rules: list[Rule], member: str) -> None:
        # One call per hash tag (route): under Redis Cluster a script's keys must share a slot.
        for _, group in groupby(rules, key=lambda r: r.key.split("}", 1)[0]):
            keys: list[str] = []
            args: list[Any] = []
            for rule in group:
                keys.append(rule.key)
                args += ("r", member, rule.span_ms)
            await self.link.run(SETTLE, keys, args, op="renew")
