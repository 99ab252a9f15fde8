"""Policy canary: a sticky share of callers (hash of issuer + subject) runs a new policy version while
the rest stay on the stable one; the share moves through steps, each judged against stable on the
same traffic mix (5xx, 429 and other 4xx rates, p99 gateway overhead and upstream latency).

`PolicyCanary` is the state machine and the judge; `CanaryProxy` is the request-path entry point
while a canary runs (outside one, the stable proxy is called directly and nothing here costs a thing).
"""

from __future__ import annotations

import base64
import logging
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import orjson

log = logging.getLogger("edgegw.policy")

_SAMPLES = 2000
OVERHEAD_FLOOR_S = 0.002  # p99 differences below these are noise on a shared machine, never a verdict
LATENCY_FLOOR_S = 0.010


@dataclass(frozen=True)
class CanarySettings:
    steps: tuple[float, ...] = (1.0, 10.0, 50.0, 100.0)  # percent of callers, increasing
    min_requests: int = 100  # canary requests per step before it is judged
    min_step_s: float = 30.0  # least time per step before it can pass
    max_error_rate_increase: float = 0.01  # 5xx and plugin failures
    max_429_rate_increase: float = 0.05
    max_4xx_rate_increase: float = 0.05  # 4xx other than 429
    max_overhead_ratio: float = 2.0  # p99 gateway overhead, canary over stable
    max_latency_ratio: float = 1.5  # p99 upstream latency, canary over stable

    @classmethod
    def parse(cls, data: dict[str, Any]) -> CanarySettings:
        """From the admin API's JSON; raises ValueError naming the field."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown canary setting(s): {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, value in data.items():
            if name == "steps":
                if not isinstance(value, list) or not value or not all(
                        isinstance(x, (int, float)) and not isinstance(x, bool) and 0 < x <= 100 for x in value):
                    raise ValueError("steps: a list of shares in percent, each above 0 and at most 100")
                if any(b <= a for a, b in zip(value, value[1:], strict=False)):
                    raise ValueError("steps: shares must increase")
                values[name] = tuple(float(x) for x in value)
            elif name == "min_requests":
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ValueError("min_requests: an integer of at least 1")
                values[name] = value
            else:
                if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                    raise ValueError(f"{name}: a number of at least 0")
                values[name] = float(value)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["steps"] = list(self.steps)
        return out


def caller_bucket(issuer: str, subject: str) -> float:
    """Where a caller falls in [0, 1): the same in every worker and replica (CRC-32, not `hash`)."""
    return zlib.crc32(f"{issuer}\0{subject}".encode()) / 2**32


def token_caller(headers: list[tuple[bytes, bytes]]) -> tuple[str, str] | None:
    """(iss, sub) read from the bearer token's payload, unverified: it only picks the policy version,
    and both versions verify the token in full."""
    for name, value in headers:
        if name.lower() == b"authorization":
            parts = value.split(b" ", 1)
            if len(parts) != 2 or parts[0].lower() != b"bearer":
                return None
            segments = parts[1].strip().split(b".")
            if len(segments) != 3 or len(segments[1]) > 8192:
                return None
            try:
                payload = orjson.loads(base64.urlsafe_b64decode(segments[1] + b"=" * (-len(segments[1]) % 4)))
            except (ValueError, orjson.JSONDecodeError):
                return None
            if isinstance(payload, dict):
                return str(payload.get("iss", "")), str(payload.get("sub", ""))
            return None
    return None


class ArmStats:
    """One arm's outcomes during one step."""

    def __init__(self) -> None:
        self.requests = self.errors = self.limited = self.rejected = 0
        self.overhead: deque[float] = deque(maxlen=_SAMPLES)
        self.upstream: deque[float] = deque(maxlen=_SAMPLES)

    def record(self, status: int, overhead_s: float, upstream_s: float) -> None:
        self.requests += 1
        if status >= 500:
            self.errors += 1
        elif status == 429:
            self.limited += 1
        elif status >= 400:
            self.rejected += 1
        self.overhead.append(overhead_s)
        if status < 400:
            self.upstream.append(upstream_s)

    def rate(self, count: int) -> float:
        return count / self.requests if self.requests else 0.0

    @staticmethod
    def p99(samples: deque[float]) -> float | None:
        if not samples:
            return None
        ordered = sorted(samples)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    def describe(self) -> dict[str, Any]:
        def ms(v: float | None) -> float | None:
            return None if v is None else round(v * 1000, 3)

        return {"requests": self.requests, "error_rate": round(self.rate(self.errors), 4),
                "rate_429": round(self.rate(self.limited), 4), "rate_4xx": round(self.rate(self.rejected), 4),
                "p99_overhead_ms": ms(self.p99(self.overhead)), "p99_upstream_ms": ms(self.p99(self.upstream))}


class PolicyCanary:
    """running -> promoted | rolled_back | aborted. `decided(state, why)` is called once, on a verdict."""

    def __init__(self, canary_id: str, version: str, settings: CanarySettings,
                 decided: Callable[[str, str], None], advanced: Callable[[int], None] | None = None) -> None:
        self.id = canary_id
        self.version = version
        self.settings = settings
        self.decided = decided
        self.advanced = advanced  # told when this judge passes a step (so every worker moves with it)
        self.state = "running"
        self.step = 0
        self.share = settings.steps[0] / 100.0
        self.step_started = time.monotonic()
        self.started_at = time.time()
        self.canary, self.stable, self.baseline = ArmStats(), ArmStats(), ArmStats()
        self.exposed = 0
        self.events: list[dict[str, Any]] = []
        self.event("started", f"version {version} for {self.share:.0%} of callers")

    def takes(self, scope_headers: list[tuple[bytes, bytes]]) -> bool:
        caller = token_caller(scope_headers)
        return caller is not None and caller_bucket(*caller) < self.share

    def record(self, to_canary: bool, status: int, overhead_s: float, upstream_s: float) -> None:
        if self.state != "running":
            return
        if to_canary:
            self.canary.record(status, overhead_s, upstream_s)
            self.exposed += 1
            if self.canary.requests >= self.settings.min_requests:
                self._judge()
        else:
            self.stable.record(status, overhead_s, upstream_s)
            self.baseline.record(status, overhead_s, upstream_s)

    def verdict(self) -> str | None:
        s, c = self.settings, self.canary
        st = self.stable if self.stable.requests >= s.min_requests else self.baseline
        for label, count, base, allowed in (
                ("error rate", c.errors, st.rate(st.errors), s.max_error_rate_increase),
                ("429 rate", c.limited, st.rate(st.limited), s.max_429_rate_increase),
                ("4xx rate", c.rejected, st.rate(st.rejected), s.max_4xx_rate_increase)):
            if c.rate(count) - base > allowed:
                return f"{label} {c.rate(count):.1%} vs stable {base:.1%} (allowed +{allowed:.1%})"
        for label, mine, theirs, ratio, floor in (
                ("p99 overhead", c.p99(c.overhead), st.p99(st.overhead), s.max_overhead_ratio, OVERHEAD_FLOOR_S),
                ("p99 upstream latency", c.p99(c.upstream), st.p99(st.upstream), s.max_latency_ratio,
                 LATENCY_FLOOR_S)):
            if mine is not None and theirs is not None and mine > floor and mine > theirs * ratio:
                return f"{label} {mine * 1000:.1f} ms vs stable {theirs * 1000:.1f} ms (allowed x{ratio:g})"
        return None

    def _judge(self) -> None:
        reason = self.verdict()
        if reason is not None:
            self.finish("rolled_back", f"step {self.step + 1} ({self.share:.0%}) failed: {reason}")
        elif time.monotonic() - self.step_started >= self.settings.min_step_s:
            passed = f"step {self.step + 1} ({self.share:.0%}) passed"
            if self.step + 1 >= len(self.settings.steps):
                self.finish("promoted", passed)
                return
            self.advance_to(self.step + 1, passed)
            if self.advanced is not None:
                self.advanced(self.step)

    def advance_to(self, step: int, why: str) -> None:
        """Move to step `step` (0-based; here, or a step another worker's judge passed)."""
        if self.state != "running" or step <= self.step or step >= len(self.settings.steps):
            return
        self.event("step_passed", why)
        self.step = step
        self.share = self.settings.steps[step] / 100.0
        self.step_started = time.monotonic()
        self.canary, self.stable = ArmStats(), ArmStats()

    def finish(self, state: str, why: str) -> None:
        """End with a verdict (here, or read from another worker); the first verdict wins."""
        if self.state != "running":
            return
        self.state = state
        self.event(state, why)
        self.decided(state, why)

    def event(self, kind: str, detail: str) -> None:
        self.events.append({"at": time.time(), "event": kind, "detail": detail})
        level = logging.WARNING if kind == "rolled_back" else logging.INFO
        log.log(level, "policy canary %s: %s: %s", self.version, kind.replace("_", " "), detail)

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "version": self.version, "state": self.state, "step": self.step + 1,
                "share": self.share, "exposed": self.exposed, "started_at": self.started_at,
                "settings": self.settings.to_dict(), "canary": self.canary.describe(),
                "stable": self.stable.describe(), "events": list(reversed(self.events))}


class CanaryProxy:
    """The inference entry point while a canary runs: each request to its caller's version, its outcome
    to the judge (status, and the overhead the proxy reports in `x-edgegw-overhead-ms`)."""

    def __init__(self, canary: PolicyCanary, stable: Any, candidate: Any) -> None:
        self.canary = canary
        self.stable = stable
        self.candidate = candidate

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        canary = self.canary
        to_canary = canary.state == "running" and canary.takes(scope["headers"])
        started = time.perf_counter()
        seen: list[Any] = [0, 0.0]

        async def watch(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen[0] = message["status"]
                for name, value in message.get("headers", ()):
                    if name == b"x-edgegw-overhead-ms":
                        seen[1] = float(value) / 1000.0
            await send(message)

        await (self.candidate if to_canary else self.stable)(scope, receive, watch)
        total = time.perf_counter() - started
        canary.record(to_canary, seen[0], seen[1], max(0.0, total - seen[1]))
