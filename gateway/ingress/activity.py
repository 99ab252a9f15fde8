"""What the status page shows over time, fed from the request path: recent errors and request counts.

`activity.record` is called once per finished request (from `ProxyEndpoint._record`), so it must stay
cheap: a clock read, a few integer updates, and an append for errors only. Per worker process.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from gateway.context import RequestContext

BUCKET_S = 5  # width of one point of the request/error sparklines
KEEP_BUCKETS = 72  # six minutes of history
KEEP_ERRORS = 50


class Activity:
    """Per-bucket request counts (all, 4xx, 5xx) and a bounded list of recent failed requests."""

    def __init__(self) -> None:
        # [bucket number (unix time // BUCKET_S), requests, 4xx, 5xx]
        self.buckets: deque[list[int]] = deque(maxlen=KEEP_BUCKETS)
        self.errors: deque[dict[str, Any]] = deque(maxlen=KEEP_ERRORS)

    def record(self, ctx: RequestContext, route: str, pool: str) -> None:
        now = time.time()
        number = int(now // BUCKET_S)
        buckets = self.buckets
        if not buckets or buckets[-1][0] != number:
            buckets.append([number, 0, 0, 0])
        bucket = buckets[-1]
        bucket[1] += 1
        status = ctx.status
        if status < 400:
            return
        bucket[2 if status < 500 else 3] += 1
        if status != 429:  # rejections by a rate limit are counted on their own panel, not listed
            # An upstream's own error answer passes through without a gateway error code: name it.
            code = ctx.error or (f"upstream_{status}" if ctx.endpoint else None)
            self.errors.append({"ts": round(now, 3), "status": status, "code": code, "route": route,
                                "pool": pool, "path": ctx.path, "model": ctx.model,
                                "endpoint": ctx.endpoint.host if ctx.endpoint else None,
                                "request_id": ctx.request_id})

    def series(self, now: float | None = None) -> dict[str, Any]:
        """Per-second rates for every bucket of the kept window, oldest first (gaps are zeros).

        The current bucket is divided by the time it has covered so far, not its full width, so the
        latest point neither lags nor looks like a drop.
        """
        now = time.time() if now is None else now
        last = int(now // BUCKET_S)
        counts = {b[0]: b for b in self.buckets}
        rows = [counts.get(n, [n, 0, 0, 0]) for n in range(last - KEEP_BUCKETS + 1, last + 1)]
        widths = [float(BUCKET_S)] * (len(rows) - 1) + [max(1.0, now - last * BUCKET_S)]
        return {"bucket_s": BUCKET_S,
                "requests_per_s": [round(r[1] / w, 3) for r, w in zip(rows, widths, strict=True)],
                "client_errors_per_s": [round(r[2] / w, 3) for r, w in zip(rows, widths, strict=True)],
                "server_errors_per_s": [round(r[3] / w, 3) for r, w in zip(rows, widths, strict=True)]}

    def recent_errors(self, limit: int = 20) -> list[dict[str, Any]]:
        """Newest first."""
        return list(reversed(self.errors))[:limit]


activity = Activity()
