"""Per-worker services every plugin instance shares: the shared key-value store with CAS, shared
queues, plugin-defined metrics, and the HTTP client behind `proxy_http_call`."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from collections import deque
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client import Counter, Gauge, Histogram
from yarl import URL

from edgecore import metrics as shared_metrics
from wasm_plugins import abi, pmetrics
from wasm_plugins.state import CallResult

log = logging.getLogger("edgegw.plugins")

_MAX_SHARED_KEYS = 100_000
_MAX_QUEUE = 10_000


class SharedData:
    """`proxy_{get,set}_shared_data`: CAS values start at 1 and grow on every write; cas=0 means no check."""

    def __init__(self) -> None:
        self.data: dict[str, tuple[bytes, int]] = {}

    def get(self, key: str) -> tuple[bytes, int] | None:
        return self.data.get(key)

    def set(self, key: str, value: bytes, cas: int) -> bool:
        old = self.data.get(key)
        if cas and (old is None or old[1] != cas):
            return False
        if old is None and len(self.data) >= _MAX_SHARED_KEYS:
            return False
        self.data[key] = (value, (old[1] + 1) if old else 1)
        return True


class Queues:
    """Shared queues; `proxy_on_queue_ready` goes to the root context that registered the queue."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.items: dict[int, deque[bytes]] = {}
        self.owner: dict[int, tuple[Any, int]] = {}
        self._next = itertools.count(1)

    def register(self, name: str, instance: Any, root_id: int) -> int:
        qid = self.ids.get(name)
        if qid is None:
            qid = self.ids[name] = next(self._next)
            self.items[qid] = deque(maxlen=_MAX_QUEUE)
        self.owner[qid] = (instance, root_id)
        return qid

    def forget(self, instance: Any) -> None:
        """An instance is released: its queues stay (others may still enqueue), unowned."""
        for qid in [q for q, (owner, _) in self.owner.items() if owner is instance]:
            del self.owner[qid]

    def resolve(self, name: str) -> int | None:
        return self.ids.get(name)

    def enqueue(self, qid: int, value: bytes) -> bool:
        items = self.items.get(qid)
        if items is None:
            return False
        items.append(value)
        owner = self.owner.get(qid)
        if owner is not None:
            instance, root_id = owner
            try:
                asyncio.get_running_loop().call_soon(instance.queue_ready, root_id, qid)
            except RuntimeError:
                pass
        return True

    def dequeue(self, qid: int) -> tuple[int, bytes]:
        items = self.items.get(qid)
        if items is None:
            return abi.NOT_FOUND, b""
        if not items:
            return abi.EMPTY, b""
        return abi.OK, items.popleft()


class PluginMetrics:
    """Metrics plugins define with `proxy_define_metric`, on the gateway's registry, named
    `edgegw_plugin_{counter,gauge,histogram}_<name>{plugin="..."}`.

    `values` is the host's own reading of each metric (what `proxy_get_metric` answers). Counters
    reach Prometheus in batches (`flush`, see `pmetrics`): the request path only adds to `values`.
    """

    _families: dict[tuple[int, str], Any] = {}  # process-wide: prometheus rejects duplicate names

    def __init__(self) -> None:
        self.defs: list[tuple[int, Any]] = []  # metric id - 1 -> (type, labelled child)
        self.values: list[float] = []
        self.flushed: list[float] = []  # counters: the part of `values` already in Prometheus
        self.by_key: dict[tuple[str, int, str], int] = {}
        self.dirty = False
        pmetrics.track(self)

    def define(self, plugin: str, metric_type: int, name: str) -> int:
        key = (plugin, metric_type, name)
        if key in self.by_key:
            return self.by_key[key]
        clean = re.sub(r"[^a-zA-Z0-9_]", "_", name)[:100] or "unnamed"
        family = self._families.get((metric_type, clean))
        if family is None:
            doc = f"plugin-defined metric {name!r}"
            if metric_type == abi.METRIC_COUNTER:
                family = Counter(f"edgegw_plugin_counter_{clean}", doc, ["plugin"], registry=shared_metrics.registry)
            elif metric_type == abi.METRIC_GAUGE:
                family = Gauge(f"edgegw_plugin_gauge_{clean}", doc, ["plugin"], registry=shared_metrics.registry)
            else:
                family = Histogram(f"edgegw_plugin_histogram_{clean}", doc, ["plugin"],
                                   registry=shared_metrics.registry)
            self._families[(metric_type, clean)] = family
        # in this order: a flush from another thread walks `defs`, so the other lists are never shorter
        self.flushed.append(0.0)
        self.values.append(0.0)
        self.defs.append((metric_type, family.labels(plugin)))
        mid = self.by_key[key] = len(self.defs)
        return mid

    def _lookup(self, mid: int) -> tuple[int, Any] | None:
        return self.defs[mid - 1] if 0 < mid <= len(self.defs) else None

    def _counted(self) -> None:
        if not self.dirty:
            self.dirty = True
            pmetrics.schedule()

    def flush(self) -> None:
        """Move counter increments into Prometheus (gateway.metrics.flush calls it, under its lock)."""
        self.dirty = False
        values, flushed = self.values, self.flushed
        for i, (kind, child) in enumerate(self.defs):
            if kind == abi.METRIC_COUNTER and values[i] != flushed[i]:
                value = values[i]
                child.inc(value - flushed[i])
                flushed[i] = value

    def increment(self, mid: int, delta: int) -> int:
        found = self._lookup(mid)
        if found is None:
            return abi.NOT_FOUND
        kind, child = found
        if kind == abi.METRIC_COUNTER:
            if delta < 0:
                return abi.BAD_ARGUMENT
            self._counted()
        elif kind == abi.METRIC_GAUGE:
            child.inc(delta)
        else:
            return abi.BAD_ARGUMENT
        self.values[mid - 1] += delta
        return abi.OK

    def record(self, mid: int, value: int) -> int:
        found = self._lookup(mid)
        if found is None:
            return abi.NOT_FOUND
        kind, child = found
        if kind == abi.METRIC_HISTOGRAM:
            child.observe(value)
        elif kind == abi.METRIC_GAUGE:
            child.set(value)
        else:  # a counter "recorded" to a value: move it forward, never back
            if value <= self.values[mid - 1]:
                return abi.OK
            self._counted()
        self.values[mid - 1] = value
        return abi.OK

    def get(self, mid: int) -> tuple[int, float]:
        found = self._lookup(mid)
        if found is None:
            return abi.NOT_FOUND, 0
        if found[0] == abi.METRIC_HISTOGRAM:
            return abi.BAD_ARGUMENT, 0
        return abi.OK, self.values[mid - 1]


@dataclass(frozen=True)
class Target:
    """An upstream a plugin may call: where every call to it connects, whatever the call says."""

    scheme: str
    host: str
    port: int
    prefix: str  # the configured URL's own path, before the call's

    def url(self, path: str) -> URL:
        """`path` is origin-form (checked by the caller): '/', then path and optional query."""
        path, _, query = path.partition("?")
        return URL.build(scheme=self.scheme, host=self.host, port=self.port, path=self.prefix + path,
                         query_string=query, encoded=True)


def parse_upstream(url: str) -> Target:
    """A configured upstream URL (validated as http(s)://host[:port][/prefix] by the config reader)."""
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.raw_host:
        raise ValueError(f"not an http(s) URL: {url!r}")
    return Target(parsed.scheme, parsed.raw_host, parsed.port or (443 if parsed.scheme == "https" else 80),
                  parsed.raw_path.rstrip("/"))


class Services:
    """Everything plugin instances of one gateway worker share."""

    def __init__(self) -> None:
        self.shared = SharedData()
        self.queues = Queues()
        self.metrics = PluginMetrics()
        self._tokens = itertools.count(1)
        self._session: aiohttp.ClientSession | None = None

    def next_token(self) -> int:
        return next(self._tokens) & 0x7FFFFFFF or next(self._tokens)

    async def http_call(self, target: Target, method: str, path: str, headers: list[tuple[str, str]], body: bytes,
                        timeout_s: float) -> CallResult:
        """One `proxy_http_call` to `target` (an upstream of the plugin): the URL is built from the
        target's scheme, host and port and the call's origin-form `path`, never by joining strings,
        so nothing in the path can name another host. Failures (connect, timeout) answer status 0 with
        no headers or body, which is how Envoy reports them to `proxy_on_http_call_response`."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar())
        try:
            url = target.url(path)
            # aiohttp frames the body itself (content-length of what is sent, `data=b""` included):
            # the plugin's own framing headers were dropped (a copied content-length with no body
            # would leave the upstream waiting for bytes that never come).
            async with self._session.request(method, url, headers=headers, data=body,
                                             timeout=aiohttp.ClientTimeout(total=timeout_s),
                                             allow_redirects=False) as resp:
                data = await resp.read()
                pairs = [(":status", str(resp.status))] + [(k.lower(), v) for k, v in resp.headers.items()]
                return CallResult(resp.status, pairs, data)
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
            log.info("plugin http call to %s://%s:%d%s%s failed: %s", target.scheme, target.host, target.port,
                     target.prefix, path, exc or type(exc).__name__)
            return CallResult(0, [], b"")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
