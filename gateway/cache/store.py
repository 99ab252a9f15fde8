"""Where cached answers live: Redis (shared by all replicas) or memory (the embedded default).

Both stores hold compressed entries and a per-key single-flight lock with a lease: the first miss
takes the lock and goes to the backend; identical misses see the lock and wait for its entry.
"""

from __future__ import annotations

import struct
import time
import zlib
from collections import OrderedDict
from typing import Protocol

from gateway.cache.config import MemoryCacheConfig, memory_cache
from gateway.config.schema import GatewayConfig
from gateway.redis.link import RedisLink
from gateway.redis.piggyback import Lookup
from gateway.redis.script import Script
from gateway.redis.settle import SETTLE, SettleBatch

_MAGIC = b"E1"
_HEADER = struct.Struct(">2sd")


# Small answers are stored as is: compressing one saves a few hundred bytes, but setting up zlib's
# state costs more CPU than that is worth (docs/ratelimit-cache.md, "Storage").
_RAW_MAX = 1024
_MAGIC_RAW = b"E0"


def encode(body: bytes) -> bytes:
    """Entry = magic, creation time, JSON body: zlib-compressed (E1), or as is when small (E0)."""
    if len(body) <= _RAW_MAX:
        return _HEADER.pack(_MAGIC_RAW, time.time()) + body
    return _HEADER.pack(_MAGIC, time.time()) + zlib.compress(body, 1)


def decode(entry: bytes) -> tuple[bytes, float] | None:
    """(JSON body, age in seconds), or None for an entry this version cannot read."""
    if len(entry) < _HEADER.size:
        return None
    magic, created = _HEADER.unpack_from(entry)
    if magic == _MAGIC_RAW:
        return entry[_HEADER.size:], max(0.0, time.time() - created)
    if magic != _MAGIC:
        return None
    try:
        return zlib.decompress(entry[_HEADER.size:]), max(0.0, time.time() - created)
    except zlib.error:
        return None


class CacheStore(Protocol):
    """A cache store. One that can answer without awaiting does so in the `try_` forms (the in-memory
    one: an awaited coroutine per call would cost more than the work); one that cannot (Redis) answers
    None / False there, and the caller awaits the async form."""

    def try_lookup(self, key: str, token: str, lock_ms: int) -> tuple[bytes | None, bool] | None:
        """`lookup` without awaiting; None when this store has to await."""
        ...

    async def lookup(self, key: str, token: str, lock_ms: int) -> tuple[bytes | None, bool]:
        """The entry, or (None, True) when this caller took the single-flight lock."""
        ...

    async def peek(self, key: str) -> tuple[bytes | None, bool]:
        """The entry, and whether someone still holds the lock."""
        ...

    def try_put(self, key: str, entry: bytes, ttl_ms: int, token: str | None) -> bool:
        """`put` without awaiting; False when this store has to await (nothing done)."""
        ...

    async def put(self, key: str, entry: bytes, ttl_ms: int, token: str | None) -> None:
        """Store, and release the lock if `token` holds it."""
        ...

    def try_unlock(self, key: str, token: str) -> bool:
        """`unlock` without awaiting; False when this store has to await (nothing done)."""
        ...

    async def unlock(self, key: str, token: str) -> None: ...


_LOOKUP = Script("cache_lookup", """
local v = redis.call('GET', KEYS[1])
if v then return {v, 0} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'', 1} end
return {'', 0}
""")
_PEEK = Script("cache_peek", """
return {redis.call('GET', KEYS[1]) or '', redis.call('EXISTS', KEYS[2])}
""")


class RedisCacheStore:
    """Raises `RedisUnavailable` on failures; the stage then bypasses the cache.

    Stores and lock releases are operations of the shared SETTLE script, so a request's cache write
    and its rate-limit settlement can leave in one call (`put_into` a `SettleBatch`).
    """

    def __init__(self, link: RedisLink, prefix: str) -> None:
        self.link = link
        self.prefix = prefix
        self._base = f"{prefix}:c:{{"
        for script in (_LOOKUP, _PEEK, SETTLE):
            link.register(script)

    def keys(self, key: str) -> tuple[str, str]:
        """The entry's and its lock's Redis keys; the hash tag keeps both in one Redis Cluster slot."""
        base = self._base + key + "}"
        return base, base + ":lock"

    def try_lookup(self, key: str, token: str, lock_ms: int) -> None:
        return None

    async def lookup(self, key: str, token: str, lock_ms: int) -> tuple[bytes | None, bool]:
        value, locked = await self.link.run(_LOOKUP, list(self.keys(key)), [token, lock_ms], op="cache")
        return (value or None), bool(locked)

    async def peek(self, key: str) -> tuple[bytes | None, bool]:
        value, locked = await self.link.run(_PEEK, list(self.keys(key)), [], op="cache")
        return (value or None), bool(locked)

    def target(self, key: str, token: str | None) -> Lookup:
        """The entry and lock of `key` as writes name them (a `Lookup` that is not sent)."""
        entry_key, lock_key = self.keys(key)
        return Lookup(entry_key, lock_key, token or "", 0)

    def put_into(self, batch: SettleBatch, target: Lookup, entry: bytes, ttl_ms: int, unlock: bool) -> None:
        """`put` as part of a SETTLE call under construction, for `target` (a lookup made for the
        request, or `target`'s)."""
        batch.put(target.entry_wire, entry, ttl_ms)
        if unlock:
            batch.unlock(target.lock_wire, target.token_wire)

    def try_put(self, key: str, entry: bytes, ttl_ms: int, token: str | None) -> bool:
        return False

    async def put(self, key: str, entry: bytes, ttl_ms: int, token: str | None) -> None:
        batch = SettleBatch()
        self.put_into(batch, self.target(key, token), entry, ttl_ms, token is not None)
        await self.link.run_encoded(SETTLE, batch.keys, batch.args, op="cache")

    def try_unlock(self, key: str, token: str) -> bool:
        return False

    async def unlock(self, key: str, token: str) -> None:
        batch = SettleBatch()
        target = self.target(key, token)
        batch.unlock(target.lock_wire, target.token_wire)
        await self.link.run_encoded(SETTLE, batch.keys, batch.args, op="cache")


_EXPIRY = struct.Struct("d")


class MemoryCacheStore:
    """Bounded by bytes and entries (`memory_cache:`), evicting LRU (or FIFO) with per-entry expiry;
    locks are process-local (as is everything here).

    A stored value is one bytes object, its expiry (monotonic seconds) then the entry: no tuple and
    float per entry, which the garbage collector would track for as long as the entry lives.
    """

    def __init__(self, max_total_bytes: int = 64 << 20, max_entries: int = 100_000, eviction: str = "lru") -> None:
        self.max_total_bytes = max_total_bytes
        self.max_entries = max_entries
        self.lru = eviction == "lru"
        self.entries: OrderedDict[str, bytes] = OrderedDict()
        self.locks: dict[str, tuple[str, float]] = {}
        self.total = 0
        self.evictions = 0  # entries dropped for room (expired ones are not counted)

    @classmethod
    def for_config(cls, config: GatewayConfig) -> MemoryCacheStore:
        """The store `config.memory_cache` describes (defaults without the section)."""
        mc = memory_cache(config) or MemoryCacheConfig()
        return cls(mc.max_bytes, mc.max_entries, mc.eviction)

    def _get(self, key: str) -> bytes | None:
        stored = self.entries.get(key)
        if stored is None:
            return None
        if _EXPIRY.unpack_from(stored)[0] <= time.monotonic():
            self._drop(key)
            return None
        if self.lru:
            self.entries.move_to_end(key)
        return stored[_EXPIRY.size:]

    def _locked(self, key: str) -> bool:
        lock = self.locks.get(key)
        if lock is not None and lock[1] <= time.monotonic():
            del self.locks[key]
            return False
        return lock is not None

    # Nothing here waits: the `try_` forms always answer, and the async forms call them.
    def try_lookup(self, key: str, token: str, lock_ms: int) -> tuple[bytes | None, bool]:
        value = self._get(key)
        if value is not None:
            return value, False
        if self._locked(key):
            return None, False
        self.locks[key] = (token, time.monotonic() + lock_ms / 1000.0)
        return None, True

    def try_put(self, key: str, entry: bytes, ttl_ms: int, token: str | None) -> bool:
        self._drop(key)
        stored = self.entries[key] = _EXPIRY.pack(time.monotonic() + ttl_ms / 1000.0) + entry
        self.total += len(stored)
        while (self.total > self.max_total_bytes or len(self.entries) > self.max_entries) and self.entries:
            self._drop(next(iter(self.entries)))
            self.evictions += 1
        if token is not None:
            self.try_unlock(key, token)
        return True

    def try_unlock(self, key: str, token: str) -> bool:
        lock = self.locks.get(key)
        if lock is not None and lock[0] == token:
            del self.locks[key]
        return True

    async def lookup(self, key: str, token: str, lock_ms: int) -> tuple[bytes | None, bool]:
        return self.try_lookup(key, token, lock_ms)

    async def peek(self, key: str) -> tuple[bytes | None, bool]:
        return self._get(key), self._locked(key)

    async def put(self, key: str, entry: bytes, ttl_ms: int, token: str | None) -> None:
        self.try_put(key, entry, ttl_ms, token)

    async def unlock(self, key: str, token: str) -> None:
        self.try_unlock(key, token)

    def _drop(self, key: str) -> None:
        old = self.entries.pop(key, None)
        if old is not None:
            self.total -= len(old)
