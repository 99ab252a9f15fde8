"""The gateway's span export: a bounded queue of encoded requests and one thread that sends them.

`put` runs on the event loop once a traced request has ended and never blocks: it appends the
request's spans, already OTLP bytes (`otlp_wire`), to a deque. When more than `max_queue_spans` wait
(the collector is slow or down) the oldest requests' spans are dropped and counted `queue_full`. The
export thread sends full batches as soon as one (`max_batch_spans`) is queued, and everything every
`schedule_delay_ms`. A batch is up to `max_batch_spans` spans (and `MAX_BATCH_BYTES`; one request's
spans are never split) joined under the constant resource and scope head into one
`ExportTraceServiceRequest`, POSTed with the SDK exporter's HTTP client (`edgecore.otel.OtlpHttpSender`:
retries, backoff, each export bounded by `export_timeout_s`). A batch that did not arrive is counted
`export_failed`.

No lock on the request path: the deque's append and popleft are atomic, `queued` is the loop's own
count of spans put minus those the exporter and the loop took out, each side writing only its own.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from edgecore.otel import DropCounter, ExportSettings
from gateway.telemetry.otlp_wire import BatchHead

MAX_BATCH_BYTES = 4 << 20  # a batch of long spans (recorded content) is cut before this


class SpanExport:
    """The bounded queue and its export thread (started here, stopped by `shutdown`)."""

    def __init__(self, settings: ExportSettings, head: BatchHead, send: Callable[[bytes], bool],
                 on_drop: DropCounter, close: Callable[[], None] = lambda: None) -> None:
        self.head = head
        self.send = send
        self.close = close
        self.on_drop = on_drop
        self.bound = settings.max_queue_spans
        self.batch = min(settings.max_batch_spans, settings.max_queue_spans)
        self.delay_s = settings.schedule_delay_ms / 1000
        self.timeout_s = settings.timeout_s
        self.chunks: deque[tuple[int, bytes]] = deque()
        self.put_spans = 0  # written by the loop only
        self.pushed_out = 0  # by the loop only
        self.taken = 0  # by the export thread only
        self.done = 0  # spans sent or counted failed, by the export thread only
        self._wake = threading.Event()
        self._woken = False  # the loop's note that it set `_wake` (saves a call per request)
        self._stopping = False
        self._flushing = False  # `flush` waits: a wake-up sends everything
        self._thread = threading.Thread(target=self._run, name="edgegw-otlp-export", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Spans waiting (approximate while the export thread takes a batch)."""
        return self.put_spans - self.taken - self.pushed_out

    def put(self, spans: int, data: bytes) -> None:
        """Queue one request's encoded spans; drops (and counts) the oldest beyond the bound."""
        self.chunks.append((spans, data))
        queued = self.put_spans = self.put_spans + spans
        queued -= self.taken + self.pushed_out
        if queued >= self.batch:
            self._full(queued)

    def _full(self, queued: int) -> None:
        """A batch waits: wake the export thread; beyond the bound, push the oldest out."""
        if not self._woken:
            self._woken = True
            self._wake.set()
        dropped = 0
        while queued - dropped > self.bound:  # (batch <= bound: counts the oldest out, wakes nothing)
            try:
                spans, _ = self.chunks.popleft()
            except IndexError:  # the export thread took the rest meanwhile
                break
            dropped += spans
        self.pushed_out += dropped
        if dropped:
            self.on_drop("queue_full", dropped)

    def _take(self) -> tuple[int, list[bytes], int]:
        """Up to a batch of the oldest requests' spans: (spans, their bytes, size)."""
        spans, size, out = 0, 0, list[bytes]()
        chunks = self.chunks
        while spans < self.batch:
            try:
                n, data = chunks.popleft()  # the loop may push the oldest out meanwhile: pop, then look
            except IndexError:
                break
            if out and (spans + n > self.batch or size + len(data) > MAX_BATCH_BYTES):
                chunks.appendleft((n, data))  # the next batch's first
                break
            spans += n
            size += len(data)
            out.append(data)
        self.taken += spans
        return spans, out, size

    def _export(self, full_only: bool = False, deadline: float | None = None) -> None:
        """Send batches until the queue is empty (`full_only`: while a whole batch waits)."""
        while not full_only or self.queued >= self.batch:
            spans, chunks, size = self._take()
            if not spans:
                return
            if deadline is not None and time.monotonic() > deadline:  # shutting down against a dead collector
                self.on_drop("export_failed", spans)
            elif not self.send(self.head.request(chunks, size)):
                self.on_drop("export_failed", spans)
            self.done += spans

    def _run(self) -> None:
        while not self._stopping:
            # Woken early: a batch is full, send full batches (what is left waits for the timer, so
            # batches stay large under load); timed out: send everything.
            woken = self._wake.wait(self.delay_s)
            self._wake.clear()
            self._woken = False
            self._export(full_only=woken and not self._flushing and not self._stopping)
        self._export(deadline=time.monotonic() + self.timeout_s)

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Export what is queued now; True when every span put so far was sent (or counted dropped)
        within `timeout_s`."""
        target = self.put_spans
        deadline = time.monotonic() + timeout_s
        self._flushing = True
        try:
            while self.done + self.pushed_out < target:
                if time.monotonic() > deadline or not self._thread.is_alive():
                    return False
                self._wake.set()
                time.sleep(0.01)
            return True
        finally:
            self._flushing = False

    def shutdown(self) -> None:
        """Send what is queued (bounded by the export timeout), stop the thread, close the session."""
        self._stopping = True
        self._wake.set()
        self._thread.join(self.timeout_s * 2 + 1)
        self.close()
