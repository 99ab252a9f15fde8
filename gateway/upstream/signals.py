"""Load signals read from the model servers' own Prometheus `/metrics` (`balancer: inference`).

vLLM and the built-in backend export `vllm:num_requests_waiting`, `vllm:num_requests_running` and
`vllm:kv_cache_usage_perc` (and the prefix-cache counters); SGLang (`--enable-metrics`) exports
`sglang:num_queue_reqs`, `sglang:num_running_reqs` and `sglang:token_usage`. Both are read, summed over
label sets (one series per served model).

The scrape is bounded in time and size and never fails a request: a missing, slow, huge or garbage
`/metrics` leaves the endpoint's signals as they were, and signals older than `stale_after_s` count as
unknown (the balancer then uses the gateway's own in-flight count). Scrapes are not requests: they
never touch an endpoint's in-flight count.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp

from gateway.upstream.config import InferenceConfig
from gateway.upstream.failures import UPSTREAM_ERRORS

if TYPE_CHECKING:
    from gateway.upstream.pool import Endpoint, Pool

log = logging.getLogger("edgegw.signals")

# metric name -> EndpointSignals field
_NAMES = {
    b"vllm:num_requests_waiting": "waiting", b"sglang:num_queue_reqs": "waiting",
    b"vllm:num_requests_running": "running", b"sglang:num_running_reqs": "running",
    b"vllm:kv_cache_usage_perc": "kv", b"vllm:gpu_cache_usage_perc": "kv", b"sglang:token_usage": "kv",
    b"vllm:prefix_cache_queries_total": "queries", b"vllm:prefix_cache_hits_total": "hits",
    b"sglang:cache_hit_rate": "hit_rate",
}
_PREFIXES = (b"vllm:", b"sglang:")


@dataclass(slots=True)
class EndpointSignals:
    """One scrape's reading. `kv` is the share of KV cache in use (0..1); `hit_share` the prefix-cache
    hits over queries since the server started (None when it does not export them)."""

    waiting: float = 0.0
    running: float = 0.0
    kv: float = 0.0
    hit_share: float | None = None
    at: float = 0.0  # time.monotonic() of the scrape


def parse(text: bytes) -> EndpointSignals | None:
    """The signals in a Prometheus text exposition, or None when it has none of them (not a model
    server's metrics, or garbage)."""
    sums: dict[str, float] = {}
    for line in text.split(b"\n"):
        if not line.startswith(_PREFIXES):
            continue
        name_end = line.find(b"{")
        head, _, value = line.rpartition(b" ")
        name = line[:name_end] if name_end > 0 else head
        field = _NAMES.get(name)
        if field is None:
            continue
        try:
            number = float(value)
        except ValueError:
            return None
        if number != number or number < 0:  # NaN or negative: not a reading to route on
            return None
        sums[field] = max(sums.get(field, 0.0), number) if field in ("kv", "hit_rate") else (
            sums.get(field, 0.0) + number)
    if not {"waiting", "running"} & sums.keys():
        return None
    hit_share: float | None = sums.get("hit_rate")
    if sums.get("queries"):
        hit_share = min(1.0, sums.get("hits", 0.0) / sums["queries"])
    kv = sums.get("kv", 0.0)
    return EndpointSignals(sums.get("waiting", 0.0), sums.get("running", 0.0), kv / 100 if kv > 1 else kv,
                           hit_share, time.monotonic())


class SignalScraper:
    """Reads every endpoint's `/metrics` of one pool every `scrape_interval_s`, concurrently."""

    def __init__(self, pool: Pool, config: InferenceConfig, session: aiohttp.ClientSession) -> None:
        self.pool = pool
        self.config = config
        self.session = session
        self._timeout = aiohttp.ClientTimeout(total=config.scrape_timeout_s)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"signals:{self.pool.name}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def scrape_all(self) -> None:
        await asyncio.gather(*(self._scrape(e) for e in list(self.pool.endpoints) if e.usable))

    async def _run(self) -> None:
        while True:
            try:
                await self.scrape_all()
            except Exception:  # a bug here must not stop the scrapes forever
                log.exception("metrics scrape round failed for pool %s", self.pool.name)
            await asyncio.sleep(self.config.scrape_interval_s)

    async def _scrape(self, endpoint: Endpoint) -> None:
        limit = self.config.max_metrics_bytes
        try:
            async with self.session.get(endpoint.url + self.config.metrics_path, timeout=self._timeout,
                                        headers=self.pool.config.upstream_headers) as resp:
                if resp.status != 200 or (resp.content_length or 0) > limit:
                    return
                parts: list[bytes] = []
                size = 0
                async for chunk in resp.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > limit:
                        return  # huge: not a reading (the connection is closed, not drained)
                    parts.append(chunk)
        except UPSTREAM_ERRORS:
            return
        signals = parse(b"".join(parts))
        if signals is not None:
            endpoint.signals = signals
