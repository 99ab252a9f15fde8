"""The Redis limiter: every rule of a request in one EVALSHA (exact across replicas)."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from gateway.ratelimit.lua import CHECK, CHECK_LOOKUP, SETTLE
from gateway.ratelimit.redis_client import RedisLink
from gateway.ratelimit.rules import ADMITTED, Decision, Rule, Settlement, quota_spec

# A cache lookup made by the limit check's script: (entry key, lock key, lock token, lock lease ms).
Lookup = tuple[str, str, str, int]
# Its answer: (the entry or None, whether this request took the single-flight lock).
Found = tuple[bytes | None, bool]


class RedisLimiter:
    """Raises `RedisUnavailable` when Redis does not answer within the link's deadline."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        link.register(CHECK)
        link.register(SETTLE)
        if link.pipelined:
            link.register(CHECK_LOOKUP)

    async def acquire(self, rules: list[Rule], member: str) -> Decision:
        return (await self.acquire_and_lookup(rules, member, None))[0]

    async def acquire_and_lookup(self, rules: list[Rule], member: str,
                                 lookup: Lookup | None) -> tuple[Decision, Found | None]:
        """The limit check and, if admitted and `lookup` is given, the cache lookup, in one call
        (single node only: `link.pipelined`)."""
        keys = [rule.key for rule in rules]
        args: list[Any] = [member]
        for rule in rules:
            args += (rule.spec or quota_spec(rule.limit, rule.quota), rule.cost)
        if lookup is None:
            out = await self.link.run(CHECK, keys, args, op="ratelimit")
        else:
            keys += lookup[:2]
            args += lookup[2:]
            out = await self.link.run(CHECK_LOOKUP, keys, args, op="ratelimit")
        # Lua numbers arrive as Redis integers (ints already); a lookup's answer may follow the rules'.
        i = 3
        for rule in rules:
            rule.remaining, rule.reset_ms, rule.bucket = out[i], out[i + 1], out[i + 2]
            i += 3
        if not out[0]:
            return Decision(False, rules[out[1] - 1], out[2]), None
        if lookup is None:
            return ADMITTED, None
        return ADMITTED, ((out[-2] or None), bool(out[-1]))

    def settle_ops(self, items: list[Settlement], member: str, keys: list[str], args: list[Any]) -> None:
        """Append the settlement to a SETTLE call under construction (it may carry cache writes too)."""
        for item in items:
            keys.append(item.rule.key)
            if item.rule.quota.kind == "concurrent":
                args += ("c", member, 0)
            else:
                args += ("t", item.rule.bucket, item.delta)

    async def settle(self, items: list[Settlement], member: str) -> None:
        keys: list[str] = []
        args: list[Any] = []
        self.settle_ops(items, member, keys, args)
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
