"""How the rate limiter's Redis calls carry the response cache's work (single Redis node).

On a route that is both limited and cached, the limiter's check script also looks the cache entry up
(and takes its single-flight lock), and the settlement after the response also stores the answer:
two Redis calls per request instead of four. The cache is the limiter's *rider* (`RateLimitStage.rider`,
wired per policy version by `gateway.ratelimit.feature`): it plans the lookup (`Rider.plan_lookup`),
and finds the answer and the request's `SettleBatch` in the request's `Piggyback` (`ctx.piggyback`).
The limiter and the cache know this module, not each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from gateway.redis import wire
from gateway.redis.settle import SettleBatch

if TYPE_CHECKING:
    from gateway.context import RequestContext


# The lookup, run by the check script after the rules when it admitted the request. The script sends
# the rules' keys then the entry's and the lock's (`KEYS[n + 1]`, `KEYS[n + 2]`; `n` rules), and the
# rules' arguments then the lock token and its lease in ms (`ARGV[a]`, `ARGV[a + 1]`; the script sets
# `a` to the first argument after the rules'); it appends to its
# reply `out` the entry ('' if none) and 1 when this request took the lock (it goes to the backend)
# or 0 (someone else holds it: wait for them). `Lookup.answer` reads those two values.
LOOKUP_LUA = """
if admitted == 1 then
  local v = redis.call('GET', KEYS[n + 1])
  if v then
    out[#out + 1] = v
    out[#out + 1] = 0
  else
    out[#out + 1] = ''
    out[#out + 1] = redis.call('SET', KEYS[n + 2], ARGV[a], 'NX', 'PX', ARGV[a + 1]) and 1 or 0
  end
end
"""


class Lookup:
    """A cache lookup for the check script to make (the keys, the lock token and its lease), then
    its answer: the entry (None: none), and whether this request took the lock. The keys and token
    are also kept encoded (`*_wire`), for the check and for the writes after the response."""

    __slots__ = ("entry_key", "lock_key", "token", "lock_ms", "entry", "took_lock", "entry_wire", "lock_wire",
                 "token_wire")

    def __init__(self, entry_key: str, lock_key: str, token: str, lock_ms: int) -> None:
        self.entry_key = entry_key
        self.lock_key = lock_key
        self.token = token
        self.lock_ms = lock_ms
        self.entry: bytes | None = None
        self.took_lock = False
        self.entry_wire = wire.bulk(entry_key)
        self.lock_wire = wire.bulk(lock_key)
        self.token_wire = wire.bulk(token)

    def answer(self, tail: list[bytes | int]) -> None:
        """Read the two values `LOOKUP_LUA` appended to the check's reply."""
        entry, took = tail
        self.entry = entry if isinstance(entry, bytes) and entry else None
        self.took_lock = bool(took)


@dataclass(slots=True)
class Piggyback:
    """One admitted request's share of the limiter's calls: the lookup made for the cache (None once the
    cache stage took it, or when none was made) and the settlement the cache's writes join."""

    batch: SettleBatch
    lookup: Lookup | None = None  # the cache stage sets it to None as it takes it: then it is the cache's


class Rider(Protocol):
    """What the cache provides the limiter."""

    def plan_lookup(self, ctx: RequestContext) -> Lookup | None:
        """This request's lookup, when the cache will make one."""
        ...

    def abandon(self, lookup: Lookup, batch: SettleBatch) -> None:
        """The request ended before the cache stage took `lookup`: release what it holds, in `batch`."""
        ...
