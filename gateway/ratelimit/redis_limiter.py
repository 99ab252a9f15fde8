"""The Redis limiter: every rule of a request in one EVALSHA (exact across replicas)."""

from __future__ import annotations

from itertools import groupby

from gateway.ratelimit.lua import CHECK, CHECK_LOOKUP
from gateway.ratelimit.rules import Check, Rule
from gateway.redis import wire
from gateway.redis.link import RedisLink
from gateway.redis.piggyback import Lookup
from gateway.redis.settle import SETTLE, SettleBatch

_ENCODED_MAX = 10_000  # rule sets kept encoded (callers); past this they are forgotten and encoded again


class RedisLimiter:
    """A `Limiter` in Redis; raises `RedisUnavailable` when Redis does not answer within the link's
    deadline. Every call is a network round trip, so the `try_` forms never decide."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        link.register(CHECK)
        link.register(SETTLE)
        if link.pipelined:
            link.register(CHECK_LOOKUP)
        # Per caller's rules (the plan keeps one tuple per caller): their keys and quota specs as the
        # check sends them, encoded once.
        self._encoded: dict[tuple[Rule, ...], tuple[list[bytes], list[bytes]]] = {}

    def try_acquire(self, check: Check, member: str) -> None:
        return None

    async def acquire(self, check: Check, member: str, lookup: Lookup | None = None) -> bool:
        """The limit check and, if admitted and `lookup` is given, the cache lookup, in one call
        (single node only: `link.pipelined`); `lookup` gets the answer."""
        rules = check.rules
        if not self.link.pipelined:  # Redis Cluster: redis-py routes the call to the keys' slot
            args: list[str | bytes | int] = [member]
            for rule, cost in zip(rules, check.costs, strict=True):
                args += (rule.spec, cost)
            check.take_reply(await self.link.run(CHECK, [rule.key for rule in rules], args, op="ratelimit"))
            return check.admitted
        encoded = self._encoded.get(rules) or self._encode(rules)
        parts = encoded[0].copy()
        if lookup is not None:
            parts += (lookup.entry_wire, lookup.lock_wire)
        nkeys = len(parts)
        parts.append(wire.bulk(member))
        ints, small = wire.INTS, wire.SMALL
        for spec, cost in zip(encoded[1], check.costs, strict=True):
            parts += (spec, ints[cost] if cost < small else wire.bulk_int(cost))
        if lookup is None:
            check.take_reply(await self.link.call(CHECK, nkeys, parts, op="ratelimit"))
            return check.admitted
        parts += (lookup.token_wire, wire.bulk_int(lookup.lock_ms))
        check.take_reply(await self.link.call(CHECK_LOOKUP, nkeys, parts, op="ratelimit"))
        if not check.admitted:
            return False
        lookup.answer(check.extra())
        return True

    def _encode(self, rules: tuple[Rule, ...]) -> tuple[list[bytes], list[bytes]]:
        if len(self._encoded) >= _ENCODED_MAX:
            self._encoded.clear()
        found = self._encoded[rules] = ([wire.bulk(r.key) for r in rules], [wire.bulk(r.spec) for r in rules])
        return found

    def try_settle(self, check: Check, member: str, used: int | None) -> bool:
        return False

    def settle_into(self, batch: SettleBatch, check: Check, member: str, used: int | None) -> None:
        """Add the settlement to a SETTLE call under construction (on a single node it may carry the
        cache's writes too)."""
        costs = check.costs
        keys = (self._encoded.get(check.rules) or self._encode(check.rules))[0]
        member_wire = None
        for i, rule in enumerate(check.rules):
            if not rule.window_ms:
                batch.release_slot(keys[i], member_wire or (member_wire := wire.bulk(member)))
            elif used is not None and rule.tokens and used != costs[i]:
                batch.settle_tokens(keys[i], check.bucket(i), used - costs[i])

    async def settle(self, check: Check, member: str, used: int | None) -> None:
        batch = SettleBatch()
        self.settle_into(batch, check, member, used)
        if batch:
            await self.link.run_encoded(SETTLE, batch.keys, batch.args, op="settle")

    async def renew(self, rules: list[Rule], member: str) -> None:
        # One call per hash tag (route): under Redis Cluster a script's keys must share a slot.
        member_wire = wire.bulk(member)
        for _, group in groupby(rules, key=lambda r: r.key.split("}", 1)[0]):
            batch = SettleBatch()
            for rule in group:
                batch.renew_slot(wire.bulk(rule.key), member_wire, rule.span_ms)
            await self.link.run_encoded(SETTLE, batch.keys, batch.args, op="renew")
