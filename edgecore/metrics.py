"""The shared Prometheus registry and its batching (used by the gateway and the plugin host).

Every subsystem registers on `registry`.

Counts taken on every request may be *batched*: added up in plain Python numbers and moved into
their Prometheus children in one step (`flush`), because updating a child directly costs a lock and
a handful of Python frames per value. Nothing reads stale numbers because of it: the registry runs
`flush` before it collects anything (`_Flusher`, registered ahead of every family), the /metrics
hook runs it (several workers: each worker's files), and a timer runs it at most `FLUSH_S` after
the first update since the last one (so another worker's scrape sees this one's counts).
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest, multiprocess

registry = CollectorRegistry(auto_describe=True)

FLUSH_S = 1.0
_pending: weakref.WeakSet[Any] = weakref.WeakSet()  # objects with a flush() method
_flush_lock = threading.Lock()  # a collection may run on another thread than the requests
_timer: list[bool] = [False]


def flush() -> None:
    """Move every batched count into its Prometheus child."""
    with _flush_lock:
        _timer[0] = False
        for item in list(_pending):
            item.flush()


def track(item: Any) -> None:
    """Flush `item` (it has a flush() method) with the others, as long as it lives."""
    _pending.add(item)


def schedule() -> None:
    """Called when something became pending: flush within FLUSH_S (once per period, not per call)."""
    if not _timer[0]:
        try:
            asyncio.get_running_loop().call_later(FLUSH_S, flush)
        except RuntimeError:
            return  # no event loop (a CLI check): the next collection flushes
        _timer[0] = True


class _Flusher:
    """A collector with no metrics of its own: registered before every family, so each
    `registry.collect()` (the /metrics page, the status page) flushes before it reads them."""

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> list[Any]:
        flush()
        return []


registry.register(_Flusher())


_before_scrape: list[Callable[[], None]] = [flush]


def on_scrape(hook: Callable[[], None]) -> None:
    """Run `hook` before each scrape: for gauges cheaper to read on demand than to keep current."""
    _before_scrape.append(hook)


_shared: list[Any] = []  # collectors that read every worker's state themselves


def register_shared(collector: Any) -> None:
    """Register a collector that reports every worker itself (it reads what each worker wrote beside
    the multiprocess files), for series prometheus_client's files cannot drop once written."""
    registry.register(collector)
    _shared.append(collector)


def render() -> bytes:
    """Prometheus text. With several workers (PROMETHEUS_MULTIPROC_DIR set), every worker's values."""
    for hook in _before_scrape:
        hook()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        for collector in _shared:
            merged.register(collector)
        return generate_latest(merged)
    return generate_latest(registry)


class BatchedCounter:
    """A counter child whose increments are added up here and moved into it by `flush`.

    Only `inc` (the event loop) writes `n` and only `flush` (under its lock) writes `done`, so a
    flush from another thread loses nothing: it moves the difference."""

    __slots__ = ("child", "n", "done", "__weakref__")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.n = self.done = 0
        track(self)

    def inc(self, amount: int = 1) -> None:
        if self.n == self.done:
            schedule()
        self.n += amount

    def flush(self) -> None:
        n = self.n
        if n != self.done:
            self.child.inc(n - self.done)
            self.done = n


class ChildCache:
    """Memoises `metric.labels(...)`: the label lookup costs more than the observation itself.
    With `batched`, a counter's children are `BatchedCounter`s (for counts taken per request)."""

    def __init__(self, metric: Any, batched: bool = False) -> None:
        self.metric = metric
        self.batched = batched
        self.children: dict[tuple[str, ...], Any] = {}

    def get(self, *labels: str) -> Any:
        child = self.children.get(labels)
        if child is None:
            child = self.metric.labels(*labels)
            if self.batched:
                child = BatchedCounter(child)
            self.children[labels] = child
        return child
