"""The Redis limiter: every rule of a request in one EVALSHA (exact across replicas)."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from gateway.ratelimit import resp
from gateway.ratelimit.lua import CHECK, CHECK_LOOKUP, SETTLE, SETTLE_OPS, UNUSED
from gateway.ratelimit.redis_client import RedisLink
from gateway.ratelimit.rules import Check, Rule

# A cache lookup made by the limit check's script: (entry key, lock key, lock token, lock lease ms),
# each encoded (`resp.bulk`).
Lookup = tuple[bytes, bytes, bytes, bytes]
# Its answer: (the entry or None, whether this request took the single-flight lock).
Found = tuple[bytes | None, bool]

_RELEASE, _TOKENS = SETTLE_OPS["c"], SETTLE_OPS["t"]


class RedisLimiter:
    """Raises `RedisUnavailable` when Redis does not answer within the link's deadline."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        link.register(CHECK)
        link.register(SETTLE)
        if link.pipelined:
            link.register(CHECK_LOOKUP)

    async def acquire(self, check: Check, member: str) -> bool:
        return (await self.acquire_and_lookup(check, member, None))[0]

    async def acquire_and_lookup(self, check: Check, member: str,
                                 lookup: Lookup | None) -> tuple[bool, Found | None]:
        """The limit check and, if admitted and `lookup` is given, the cache lookup, in one call
        (single node only: `link.pipelined`)."""
        rules = check.rules
        if not self.link.pipelined:  # Redis Cluster: redis-py routes the call to the keys' slot
            args: list[Any] = [member]
            for rule, cost in zip(rules, check.costs, strict=True):
                args += (rule.spec, cost)
            out = check.out = await self.link.run(CHECK, [rule.key for rule in rules], args, op="ratelimit")
            return bool(out[0]), None
        parts = [b"", *[rule.key_bulk for rule in rules]]  # (parts[0]: the call's head, `link.call`)
        check.member = resp.bulk(member)
        if lookup is not None:
            parts += lookup[:2]
        nkeys = len(parts) - 1
        parts.append(check.member)
        ints, small = resp.INTS, resp.SMALL
        for rule, cost in zip(rules, check.costs, strict=True):
            parts += (rule.spec_bulk, ints[cost] if cost < small else resp.bulk_int(cost))
        if lookup is None:
            out = check.out = await self.link.call(CHECK, nkeys, parts, op="ratelimit")
            return bool(out[0]), None
        parts += lookup[2:]
        # Lua numbers arrive as Redis integers (ints already); the lookup's answer follows the rules'.
        out = check.out = await self.link.call(CHECK_LOOKUP, nkeys, parts, op="ratelimit")
        if not out[0]:
            return False, None
        return True, ((out[-2] or None), bool(out[-1]))

    def settle_ops(self, check: Check, member: str, used: int | None, keys: list[Any], args: list[Any],
                   encoded: bool = True) -> None:
        """Append the settlement to a SETTLE call under construction (single node: it may carry cache
        writes too), encoded (`resp.bulk`), or as plain values for `link.run`."""
        costs = check.costs
        if encoded:
            release = (_RELEASE, check.member or resp.bulk(member), UNUSED)
        for i, rule in enumerate(check.rules):
            if not rule.window_ms:
                if encoded:
                    keys.append(rule.key_bulk)
                    args += release
                else:
                    keys.append(rule.key)
                    args += ("c", member, 0)
            elif used is not None and rule.tokens and used != costs[i]:
                bucket, delta = check.bucket(i), used - costs[i]
                if encoded:
                    keys.append(rule.key_bulk)
                    args += (_TOKENS, resp.bulk_int(bucket), resp.bulk_int(delta))
                else:
                    keys.append(rule.key)
                    args += ("t", bucket, delta)

    async def settle(self, check: Check, member: str, used: int | None) -> None:
        keys: list[Any] = []
        args: list[Any] = []
        self.settle_ops(check, member, used, keys, args, encoded=False)
        if keys:
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
