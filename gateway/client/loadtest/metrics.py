"""What one request measured (a Sample) and the figures a run's samples add up to."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

PERCENTILES = (50, 90, 99)


@dataclass
class Sample:
    """One request. Times are seconds since the run started; `None` where the request never got there."""

    start: float
    end: float
    status: int  # HTTP status; 0 when no response came (connect error, timeout, cut stream)
    ok: bool
    error_code: str | None = None  # the OpenAI-style error.code (or type), or the transport failure
    first_token: float | None = None  # when the first content token arrived (TTFT = first_token - start)
    token_times: list[float] = field(default_factory=list)  # arrival of each content event (streaming)
    output_tokens: int = 0  # usage.completion_tokens when the server sent it, else content events
    overhead_ms: float | None = None  # the gateway's x-edgegw-overhead-ms header
    user: int = -1  # closed loop: which user sent it (0..N-1); open loop: -1

    @property
    def latency(self) -> float:
        return self.end - self.start

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.start

    def itls(self) -> list[float]:
        """Gaps between successive content events: the inter-token latencies of this stream."""
        t = self.token_times
        return [b - a for a, b in zip(t, t[1:], strict=False)]

    def tokens_per_s(self) -> float | None:
        """Output tokens over end-to-end latency: the rate one user of the API experiences."""
        if not self.ok or self.output_tokens <= 0 or self.latency <= 0:
            return None
        return self.output_tokens / self.latency

    def to_row(self) -> list[Any]:
        return [round(self.start, 4), round(self.end, 4), self.status, self.error_code,
                None if self.ttft is None else round(self.ttft, 5), self.output_tokens,
                None if self.overhead_ms is None else round(self.overhead_ms, 3), self.user]


SAMPLE_COLUMNS = ["start_s", "end_s", "status", "error_code", "ttft_s", "output_tokens", "overhead_ms", "user"]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def distribution(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p90/p99, mean and max of `values` (all None when there are none)."""
    out: dict[str, float | None] = {f"p{q}": percentile(values, q) for q in PERCENTILES}
    out["mean"] = sum(values) / len(values) if values else None
    out["max"] = max(values) if values else None
    out["count"] = len(values)
    return out


def error_key(sample: Sample) -> str:
    """How an error is counted: `STATUS code` (or `transport code` when no response came)."""
    status = str(sample.status) if sample.status else "transport"
    return f"{status} {sample.error_code or '-'}"


def summarise(samples: Iterable[Sample], wall_s: float) -> dict[str, Any]:
    """The run's figures: counts, rates, latency distributions (seconds) and errors by status and code."""
    done = list(samples)
    ok = [s for s in done if s.ok]
    rate_limited = [s for s in done if s.status == 429]
    failed = [s for s in done if not s.ok and s.status != 429]
    itl = [gap for s in ok for gap in s.itls()]
    tokens = sum(s.output_tokens for s in ok)
    per_request_tps = [v for s in ok if (v := s.tokens_per_s()) is not None]
    wall = max(wall_s, 1e-9)
    return {
        "requests": len(done),
        "ok": len(ok),
        "errors": len(failed),
        "rate_limited": len(rate_limited),
        "error_rate": len(failed) / len(done) if done else 0.0,
        "rate_limited_rate": len(rate_limited) / len(done) if done else 0.0,
        "wall_s": wall_s,
        "requests_per_s": len(done) / wall,
        "ok_per_s": len(ok) / wall,
        "output_tokens": tokens,
        "output_tokens_per_s": tokens / wall,
        "latency_s": distribution([s.latency for s in ok]),
        "ttft_s": distribution([t for s in ok if (t := s.ttft) is not None]),
        "itl_s": distribution(itl),
        "tokens_per_s_per_request": distribution(per_request_tps),
        "overhead_ms": distribution([s.overhead_ms for s in done if s.overhead_ms is not None]),
        "errors_by_status_code": dict(Counter(error_key(s) for s in done if not s.ok).most_common()),
    }


def timeseries(samples: Iterable[Sample], wall_s: float, bucket_s: float = 1.0) -> dict[str, list[Any]]:
    """Per-bucket figures by completion time: throughput, errors, 429s, latency and TTFT p50/p90."""
    n = max(1, math.ceil(wall_s / bucket_s))
    done = list(samples)
    buckets: list[list[Sample]] = [[] for _ in range(n)]
    for s in done:
        buckets[min(n - 1, max(0, int(s.end / bucket_s)))].append(s)
    out: dict[str, list[Any]] = {k: [] for k in ("t", "requests_per_s", "errors_per_s", "rate_limited_per_s",
                                                 "tokens_per_s", "latency_p50", "latency_p90", "ttft_p50",
                                                 "in_flight")}
    for i, bucket in enumerate(buckets):
        ok = [s for s in bucket if s.ok]
        end = min((i + 1) * bucket_s, wall_s) if i == n - 1 else (i + 1) * bucket_s
        width = max(end - i * bucket_s, 1e-3)  # the last bucket may be partial
        out["t"].append(round(end, 3))
        out["requests_per_s"].append(len(bucket) / width)
        out["errors_per_s"].append(sum(1 for s in bucket if not s.ok and s.status != 429) / width)
        out["rate_limited_per_s"].append(sum(1 for s in bucket if s.status == 429) / width)
        out["tokens_per_s"].append(sum(s.output_tokens for s in ok) / width)
        out["latency_p50"].append(percentile([s.latency for s in ok], 50))
        out["latency_p90"].append(percentile([s.latency for s in ok], 90))
        out["ttft_p50"].append(percentile([t for s in ok if (t := s.ttft) is not None], 50))
    # Requests in flight at each bucket's midpoint: shows the ramp-up and (open loop) queueing.
    mids = [(i + 0.5) * bucket_s for i in range(n)]
    flight = [0] * n
    for s in done:
        first = max(0, math.ceil(s.start / bucket_s - 0.5))
        for i in range(first, n):
            if mids[i] >= s.end:
                break
            flight[i] += 1
    out["in_flight"] = flight
    out["t_mid"] = [round(m, 3) for m in mids]
    return out


def histogram(values: Sequence[float], bins: int = 30) -> tuple[list[float], list[int]]:
    """Equal-width bins from 0 to the p99.5 (a few outliers must not squash the picture): edges, counts."""
    if not values:
        return [], []
    top = percentile(values, 99.5) or max(values)
    top = top if top > 0 else 1.0
    width = top / bins
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int(v / width))] += 1
    return [round(i * width, 6) for i in range(bins + 1)], counts
