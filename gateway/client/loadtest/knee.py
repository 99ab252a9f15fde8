"""Where a sweep bends: the last load level whose extra load still became throughput, and where errors start.

Below saturation a closed loop's throughput grows with users at flat latency; past it throughput stays
put and latency grows with every user (Little's law), and an open loop's latency runs away. So a step
from load L1 to L2 "bends" when less than half of the added load became throughput, or when p90
latency passed `latency_factor` times that of the lightest point. The knee is the point before the
first bend: the most load the system takes without queueing. Errors start at the first point whose
error rate (429s apart) reaches `error_threshold`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Point:
    load: float  # users (closed loop) or offered requests/s (open loop)
    throughput: float  # successful requests/s
    latency_p90: float | None  # seconds
    error_rate: float  # failed / all, 429s excluded
    rate_limited_rate: float = 0.0


@dataclass(frozen=True)
class Knee:
    knee: float | None  # load level of the knee (None: fewer than two points)
    bends_at: float | None  # first load level past the knee (None: it never bent)
    errors_start: float | None  # first load level with error_rate >= threshold
    rate_limited_start: float | None  # first load level with 429s >= threshold
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"knee": self.knee, "bends_at": self.bends_at, "errors_start": self.errors_start,
                "rate_limited_start": self.rate_limited_start, "reason": self.reason}


def find_knee(points: list[Point], efficiency: float = 0.5, latency_factor: float = 3.0,
              error_threshold: float = 0.01) -> Knee:
    """The knee of a sweep (points in increasing load); see the module docstring for the rule."""
    pts = sorted(points, key=lambda p: p.load)
    errors_start = next((p.load for p in pts if p.error_rate >= error_threshold), None)
    limited_start = next((p.load for p in pts if p.rate_limited_rate >= error_threshold), None)
    if len(pts) < 2:
        return Knee(pts[0].load if pts else None, None, errors_start, limited_start, "one point: nothing to compare")
    base_latency = pts[0].latency_p90
    for prev, cur in zip(pts, pts[1:], strict=False):
        added = cur.load / prev.load - 1.0 if prev.load > 0 else 0.0
        gained = cur.throughput / prev.throughput - 1.0 if prev.throughput > 0 else 0.0
        if added > 0 and gained < efficiency * added:
            reason = (f"from {_fmt(prev.load)} to {_fmt(cur.load)} load rose {added * 100:.0f}% but throughput "
                      f"{gained * 100:+.0f}%")
            return Knee(prev.load, cur.load, errors_start, limited_start, reason)
        if base_latency and cur.latency_p90 and cur.latency_p90 > latency_factor * base_latency:
            reason = (f"p90 latency at {_fmt(cur.load)} is {cur.latency_p90 / base_latency:.1f}x that at "
                      f"{_fmt(pts[0].load)}")
            return Knee(prev.load, cur.load, errors_start, limited_start, reason)
    return Knee(pts[-1].load, None, errors_start, limited_start,
                "throughput kept up with load at every point: the knee is beyond the sweep")


def _fmt(value: float) -> str:
    return f"{value:g}"
