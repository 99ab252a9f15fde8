"""SETTLE: everything a request still writes after its response, in one script call.

The limiter's settlement and the response cache's store share it, so on a single node a request's
writes after the response take one (posted) call (`RedisLink.post` merges the posts of one event-loop
iteration into one call); under Redis Cluster the cache's keys live in other slots, so each part is
its own call. A `SettleBatch` gathers a request's writes as named operations. Keys, members and
tokens are passed encoded (`wire.bulk`), as their owners keep them: a caller's rule keys and a
request's lookup are encoded once and used by the check and the settlement alike.
"""

from __future__ import annotations

from gateway.redis import wire
from gateway.redis.script import Script

# KEYS[i] with 3 values per key: op, a, b.
#   't' bucket delta: settle a token reservation to the real usage (only while the bucket lives)
#   'c' member -:     release a concurrency slot
#   'r' member lease: renew a concurrency lease of a request still in flight
#   'p' value ttl_ms: store a cache entry
#   'u' token -:      release a single-flight lock, if this token still holds it
SETTLE = Script("ratelimit_settle", """
local now
for i = 1, #KEYS do
  local a = (i - 1) * 3 + 1
  local op, x, y = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local key = KEYS[i]
  if op == 't' then
    local st = redis.call('HMGET', key, x, 'n')
    local v = tonumber(st[1])
    if v ~= nil then  -- (a bucket that has left the window is not settled)
      v = v + tonumber(y)
      if v <= 0 then  -- the bucket goes (it may have been the oldest): the next check counts the rest again
        redis.call('HDEL', key, x, 'n', 'o')
      elseif st[2] then
        redis.call('HSET', key, x, v, 'n', tonumber(st[2]) + tonumber(y))
      else  -- no sum to keep: the next check counts again anyway
        redis.call('HSET', key, x, v)
      end
    end
  elseif op == 'c' then
    redis.call('ZREM', key, x)
  elseif op == 'r' then
    if now == nil then
      local t = redis.call('TIME')
      now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
    if redis.call('ZADD', key, 'XX', 'CH', now + tonumber(y), x) == 1 then
      redis.call('PEXPIRE', key, tonumber(y) * 2)
    end
  elseif op == 'p' then
    redis.call('SET', key, x, 'PX', y)
  elseif op == 'u' then
    if redis.call('GET', key) == x then redis.call('DEL', key) end
  end
end
return 1
""")


_RELEASE, _RENEW, _TOKENS, _PUT, _UNLOCK = (wire.bulk(op) for op in ("c", "r", "t", "p", "u"))
_UNUSED = wire.INTS[0]


class SettleBatch:
    """One SETTLE call under construction: its keys, and per key the operation and its two values,
    encoded as they are added (`wire`), for `RedisLink.post` or `run_encoded`."""

    __slots__ = ("keys", "args")

    def __init__(self) -> None:
        self.keys: list[bytes] = []
        self.args: list[bytes] = []

    def __bool__(self) -> bool:
        return bool(self.keys)

    def release_slot(self, key: bytes, member: bytes) -> None:
        """Free the concurrency slot `member` holds (`key`, `member`: `wire.bulk`)."""
        self.keys.append(key)
        self.args += (_RELEASE, member, _UNUSED)

    def renew_slot(self, key: bytes, member: bytes, lease_ms: int) -> None:
        """Extend the lease of a slot still held (none is taken if it was lost)."""
        self.keys.append(key)
        self.args += (_RENEW, member, wire.bulk_int(lease_ms))

    def settle_tokens(self, key: bytes, bucket: int, delta: int) -> None:
        """Add `delta` to the window bucket a token reservation was charged to (if it still counts)."""
        self.keys.append(key)
        self.args += (_TOKENS, wire.bulk_int(bucket), wire.bulk_int(delta))

    def put(self, key: bytes, entry: bytes, ttl_ms: int) -> None:
        """Store a cache entry (`entry`: as stored, not encoded)."""
        self.keys.append(key)
        self.args += (_PUT, wire.bulk(entry), wire.bulk_int(ttl_ms))

    def unlock(self, key: bytes, token: bytes) -> None:
        """Release a single-flight lock, if `token` still holds it."""
        self.keys.append(key)
        self.args += (_UNLOCK, token, _UNUSED)
