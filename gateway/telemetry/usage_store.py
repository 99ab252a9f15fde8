"""Where the hourly usage buckets live, and the one query `/admin/usage` and `edgegw usage` ask.

- With `redis:` configured: one hash per hour (`PREFIX:usage:LABELS:HOUR`, field = label values and
  count, value = the sum of every worker of every replica), written by `HINCRBY` every `FLUSH_S`,
  expiring after `telemetry.usage.retention_h`. The answer covers every replica.
- Without: each worker keeps its buckets in memory (at most `MEMORY_RETENTION_H` hours) and, when the
  gateway runs several workers, writes them to `usage-PID.json` in the workers' metrics directory,
  where any worker reads them all. The answer covers this replica only, and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from gateway.telemetry.usage import COUNTS, Key, UsageRecorder, hour_of

log = logging.getLogger("edgegw.usage")

FLUSH_S = 2.0
MEMORY_RETENTION_H = 24 * 7
Buckets = dict[int, dict[Key, list[int]]]


def merge(into: Buckets, more: Buckets) -> None:
    for hour, series in more.items():
        bucket = into.setdefault(hour, {})
        for key, counts in series.items():
            have = bucket.get(key)
            if have is None:
                bucket[key] = list(counts)
            else:
                for i, n in enumerate(counts):
                    have[i] += n


class UsageStore:
    """Flushes a recorder's counts and answers usage queries."""

    def __init__(self, recorder: UsageRecorder, redis_config: Any = None) -> None:
        self.recorder = recorder
        self.names = recorder.names
        self.retention_h = recorder.config.retention_h
        self.redis_config = redis_config
        self._redis: Any = None
        self.local: Buckets = {}  # without Redis: this worker's buckets
        directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        self.file = Path(directory) / f"usage-{os.getpid()}.json" if directory else None
        self._task: asyncio.Task[None] | None = None

    @property
    def scope(self) -> str:
        return "cluster" if self.redis_config is not None else "replica"

    async def start(self) -> None:
        if self.redis_config is not None:
            from redis.asyncio import Redis
            from redis.asyncio.cluster import RedisCluster

            cls: Any = RedisCluster if self.redis_config.cluster else Redis
            timeout = max(1.0, self.redis_config.timeout_ms / 1000)
            self._redis = cls.from_url(self.redis_config.url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            try:
                await self.flush()
            except Exception as exc:  # Redis down: the counts wait for the next flush (bounded below)
                log.warning("usage flush failed: %s", type(exc).__name__)

    def _hash(self, hour: int) -> str:
        prefix = self.redis_config.key_prefix if self.redis_config is not None else "edgegw"
        return f"{prefix}:usage:{','.join(self.names)}:{hour}"

    async def flush(self) -> None:
        pending = self.recorder.take()
        if not pending:
            return
        if self._redis is None:
            merge(self.local, pending)
            self._prune()
            self._write_file()
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for hour, series in pending.items():
                    name = self._hash(hour)
                    for key, counts in series.items():
                        for what, n in zip(COUNTS, counts, strict=True):
                            if n:
                                pipe.hincrby(name, orjson.dumps([*key, what]).decode(), n)
                    pipe.expire(name, self.retention_h * 3600 + 3600)
                await pipe.execute()
        except Exception:
            # Kept for the next try, within the memory bound: the oldest hours go first.
            merge(self.recorder.pending, pending)
            for hour in sorted(self.recorder.pending)[:-MEMORY_RETENTION_H]:
                del self.recorder.pending[hour]
            raise

    def _prune(self) -> None:
        oldest = hour_of(time.time()) - min(self.retention_h, MEMORY_RETENTION_H)
        for hour in [h for h in self.local if h < oldest]:
            del self.local[hour]

    def _write_file(self) -> None:
        if self.file is None:
            return
        data = {"labels": list(self.names),
                "hours": {str(h): [[*k, *c] for k, c in s.items()] for h, s in self.local.items()}}
        tmp = self.file.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(data))
        tmp.replace(self.file)

    # --- queries -----------------------------------------------------------------------------------

    async def buckets(self, since: float) -> Buckets:
        """Every bucket from the hour holding `since` on: all replicas (Redis) or this replica's workers."""
        await self.flush()
        first, last = hour_of(since), hour_of(time.time())
        out: Buckets = {}
        if self._redis is not None:
            for hour in range(max(first, last - self.retention_h), last + 1):
                raw = await self._redis.hgetall(self._hash(hour))
                series: dict[Key, list[int]] = {}
                for field, value in raw.items():
                    *key, what = orjson.loads(field)
                    counts = series.setdefault(tuple(key), [0, 0, 0, 0])
                    counts[COUNTS.index(what)] += int(value)
                if series:
                    out[hour] = series
            return out
        merge(out, {h: s for h, s in self.local.items() if h >= first})
        for other in self._other_files():
            merge(out, {h: s for h, s in other.items() if h >= first})
        return out

    def _other_files(self) -> Iterable[Buckets]:
        if self.file is None:
            return
        for path in self.file.parent.glob("usage-*.json"):
            if path == self.file:
                continue
            try:
                data = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue
            if tuple(data.get("labels", ())) != self.names:
                continue
            n = len(self.names)
            yield {int(h): {tuple(row[:n]): list(row[n:]) for row in rows} for h, rows in data["hours"].items()}
