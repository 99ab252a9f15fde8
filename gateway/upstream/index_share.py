"""The prefix index shared between routers through Redis (`pools[].inference.shared_index`).

Every gateway worker and replica keeps its own `PrefixIndex` and routes on it alone: the request path
never waits on the network. What this adds is a background exchange: each decision's prompt blocks
(which endpoint took them, for which session) are queued in memory; every `interval_s` one Redis call
appends this worker's queued decisions to the pool's stream (one entry, capped) and reads the entries
the other routers appended since the last call, which are recorded in the local index as if this
worker had routed them. So a prefix one router placed is known to the others within about
`interval_s`: a shared-prefix group's users converge on one replica whichever router each reaches,
and an agent's next step finds its history through any router.

Redis down, slow or answering garbage: the exchange stops (at most one call in flight, bounded by
`timeout_ms`; probed again every `retry_s`), queued decisions beyond `MAX_PENDING` are dropped, and
every router goes on with what it learned so far and its own decisions (local only). Entries name
endpoints by URL, so routers whose pools list the same servers in another order agree; an entry for
an endpoint this router does not know (another deployment, a removed replica) is skipped.

Wire format of an entry (`d` field): 8 bytes of router id, a count of URLs, each as a 2-byte length and
its bytes, then records: URL index (1 byte), session (8), block count (2), blocks (16 bytes each).
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.upstream.config import SharedIndexConfig
from gateway.upstream.prompt_key import BLOCK_BYTES, DIGEST_BYTES, MAX_BYTES

if TYPE_CHECKING:
    from gateway.upstream.pool import Pool

log = logging.getLogger("edgegw.routing")

DIGEST = DIGEST_BYTES
MAX_PENDING = 4096  # decisions queued while Redis is slow or down; older ones are dropped
MAX_BATCH = 512  # decisions per entry
MAX_BLOCKS = MAX_BYTES // BLOCK_BYTES  # per decision: all a prompt key holds
READ_COUNT = 64  # entries read per call (more: the next call follows at once)
WARM_COUNT = 256  # entries a starting worker reads first (the newest): it starts with the others' index
_HEAD = struct.Struct("<8sB")
_RECORD = struct.Struct("<BQH")

# KEYS[1]: the pool's stream. ARGV: entry ('' when none), last id read ('': none yet, the newest
# ARGV[4] entries, newest first), MAXLEN, COUNT, TTL in ms (an idle pool's stream goes away).
_SCRIPT = """
if ARGV[1] ~= '' then
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'd', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
if ARGV[2] == '' then
  return redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[4])
end
return redis.call('XRANGE', KEYS[1], '(' .. ARGV[2], '+', 'COUNT', ARGV[4])
"""


def encode(router: bytes, records: list[tuple[tuple[bytes, ...], str, int]]) -> bytes:
    """One entry: `records` of (blocks, endpoint URL, session), of at most 255 endpoints."""
    urls: dict[str, int] = {}
    body: list[bytes] = []
    for blocks, url, session in records:
        at = urls.get(url)
        if at is None:
            if len(urls) == 255:
                continue
            at = urls[url] = len(urls)
        blocks = blocks[:MAX_BLOCKS]
        body.append(_RECORD.pack(at, session & 0xFFFF_FFFF_FFFF_FFFF, len(blocks)))
        body.append(b"".join(blocks))
    table = [struct.pack("<H", len(raw)) + raw for raw in (url.encode() for url in urls)]
    return _HEAD.pack(router, len(table)) + b"".join(table) + b"".join(body)


def decode(entry: bytes) -> tuple[bytes, Iterator[tuple[tuple[bytes, ...], str, int]]]:
    """The router id and the records of an entry. Garbage raises `ValueError` (or `struct.error`)."""
    router, count = _HEAD.unpack_from(entry)
    at = _HEAD.size
    urls = []
    for _ in range(count):
        (size,) = struct.unpack_from("<H", entry, at)
        urls.append(entry[at + 2:at + 2 + size].decode())
        at += 2 + size
    return router, _records(entry, at, urls)


def _records(entry: bytes, at: int, urls: list[str]) -> Iterator[tuple[tuple[bytes, ...], str, int]]:
    view = memoryview(entry)
    while at < len(entry):
        index, session, n = _RECORD.unpack_from(entry, at)
        at += _RECORD.size
        end = at + n * DIGEST
        if index >= len(urls) or n > MAX_BLOCKS or end > len(entry):
            raise ValueError("a record beyond the entry")
        yield tuple(bytes(view[i:i + DIGEST]) for i in range(at, end, DIGEST)), urls[index], session
        at = end


class IndexShare:
    """One pool's exchange (per worker): `post` on the request path, `start`/`stop` its task."""

    def __init__(self, pool: Pool, config: SharedIndexConfig) -> None:
        assert pool.inference is not None
        self.pool = pool
        self.config = config
        self.router = os.urandom(8)
        self._pending: deque[tuple[tuple[bytes, ...], str, int]] = deque(maxlen=MAX_PENDING)
        self._last = b""  # the last stream entry id read
        timeout = config.timeout_ms / 1000.0
        # (No connection yet: the first exchange opens it.)
        self._client = Redis.from_url(config.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                      max_connections=1, retry=Retry(NoBackoff(), 0))
        self._script = self._client.register_script(_SCRIPT)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.up = False
        self.sent = self.received = self.failures = 0
        pool.inference.outbox = self.post

    def post(self, blocks: tuple[bytes, ...], url: str, session: int) -> None:
        """A decision of this worker, for the others (no I/O: queued for the next exchange)."""
        self._pending.append((blocks, url, session))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"index-share:{self.pool.name}")

    async def stop(self) -> None:
        # The flag as well as the cancel: on Python 3.11 `asyncio.wait_for` can swallow a cancellation
        # that arrives as the exchange completes, and the loop would go on (a stop that never returned).
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        try:  # (bounded: a stopping gateway must not wait on Redis)
            await asyncio.wait_for(self._client.aclose(), self.config.timeout_ms / 1000.0)
        except (RedisError, OSError, TimeoutError):
            pass

    async def _run(self) -> None:
        while not self._stopping:
            try:
                more = await asyncio.wait_for(self.exchange(), self.config.timeout_ms / 1000.0 * 2)
            except (RedisError, OSError, TimeoutError) as exc:
                self._failed(exc)
                await asyncio.sleep(self.config.retry_s)
                continue
            except Exception:  # a bug here must not stop the exchange forever
                log.exception("prefix index exchange failed for pool %s", self.pool.name)
                await asyncio.sleep(self.config.retry_s)
                continue
            if not self.up:
                self.up = True
                log.info("pool %s shares its prefix index through Redis", self.pool.name)
            await asyncio.sleep(0 if more else self.config.interval_s)

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        if self.up or self.failures == 1:
            log.warning("pool %s: prefix index not shared (%s); routing on this worker's own index, retrying "
                        "every %.1fs", self.pool.name, exc or type(exc).__name__, self.config.retry_s)
        self.up = False

    async def exchange(self) -> bool:
        """Send the queued decisions, record the other routers' new ones; True when more are waiting."""
        cfg = self.config
        batch = [self._pending.popleft() for _ in range(min(MAX_BATCH, len(self._pending)))]
        entry = encode(self.router, batch) if batch else b""
        try:
            reply = await self._script(keys=[cfg.key], args=[
                entry, self._last, cfg.max_entries, READ_COUNT if self._last else WARM_COUNT, int(cfg.ttl_s * 1000)])
        except BaseException:
            self._pending.extendleft(reversed(batch))  # sent again next time (if the queue has room)
            raise
        self.sent += len(batch)
        entries = list(reply) if self._last else list(reversed(reply))
        for i, item in enumerate(entries):
            self._apply(item)
            if i % 16 == 15:
                await asyncio.sleep(0)  # a backlog must not hold the event loop (requests wait on it)
        return bool(self._last) and len(reply) >= READ_COUNT

    def _apply(self, item: Any) -> None:
        try:
            entry_id, fields = item
            self._last = entry_id if isinstance(entry_id, bytes) else str(entry_id).encode()
            data = dict(zip(fields[::2], fields[1::2], strict=False)).get(b"d", b"")
            router, records = decode(data)
            if router == self.router:
                return
            inference = self.pool.inference
            assert inference is not None
            endpoints = {e.url: e for e in self.pool.endpoints}
            for blocks, url, session in records:
                endpoint = endpoints.get(url)
                if endpoint is not None and blocks:
                    inference.learn(blocks, endpoint, session)
                    self.received += 1
        except (ValueError, TypeError, struct.error, UnicodeDecodeError):
            log.debug("pool %s: skipped a garbled prefix index entry", self.pool.name)
