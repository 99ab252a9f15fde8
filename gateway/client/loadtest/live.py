"""The live progress line: users, req/s, errors, p50 latency and TTFT over the last few seconds.

On a terminal it rewrites one line in place; otherwise (CI logs, pipes) it prints a line every
`every_s` seconds so a log stays readable.
"""

from __future__ import annotations

import sys
from typing import TextIO

from gateway.client.loadtest.metrics import percentile
from gateway.client.loadtest.runner import Run

WINDOW_S = 5.0


def progress_line(run: Run) -> str:
    """One line describing the run right now (figures over the last WINDOW_S seconds)."""
    now = run.now()
    recent = [s for s in run.samples if s.end >= now - WINDOW_S]
    span = min(WINDOW_S, max(now, 1e-9))
    ok = [s for s in recent if s.ok]
    errors = sum(1 for s in run.samples if not s.ok and s.status != 429)
    limited = sum(1 for s in run.samples if s.status == 429)
    p50 = percentile([s.latency for s in ok], 50)
    ttft = percentile([t for s in ok if (t := s.ttft) is not None], 50)
    tokens = sum(s.output_tokens for s in ok) / span
    who = f"users {run.active_users}/{run.plan.users}" if run.plan.mode == "closed" else \
        f"rate {run.plan.rate:g}/s in flight {run.in_flight}"
    return (f"{now:6.1f}s/{run.plan.duration_s:g}s  {who}  req/s {len(recent) / span:7.1f}  "
            f"done {len(run.samples)}  errors {errors}  429s {limited}  p50 {_ms(p50)}  "
            f"TTFT p50 {_ms(ttft)}  tok/s {tokens:7.1f}")


class Progress:
    """Prints progress lines to `out` (stderr by default)."""

    def __init__(self, out: TextIO | None = None, every_s: float = 5.0) -> None:
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self.every_s = every_s
        self._last = -1e9

    def __call__(self, run: Run) -> None:
        if self.tty:
            self.out.write("\r\033[K" + progress_line(run))
        elif run.now() - self._last >= self.every_s:
            self._last = run.now()
            self.out.write(progress_line(run) + "\n")
        self.out.flush()

    def done(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}ms"
