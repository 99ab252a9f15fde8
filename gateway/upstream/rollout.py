"""Backend rollouts: a pool's canary endpoint group takes a growing share of traffic, step by step,
judged against the stable group; a bad step rolls back at once, passing every step promotes.

Each worker judges the traffic it sees. A verdict (its judge's, or an operator's through one
worker's admin API) is told to `decided`, which `gateway.policy.rollout_sync` shares through a file
beside the policy so that every worker follows it (`follow`). State lives on the `Pool`, so a policy
reload that leaves the pool unchanged keeps the rollout where it is.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter, Gauge

from gateway.metrics import registry

log = logging.getLogger("edgegw.rollout")

rollout_share = Gauge("edgegw_rollout_canary_share", "Share of a pool's traffic sent to its canary group "
                      "(0 after a rollback, 1 after promotion)", ["pool"], registry=registry,
                      multiprocess_mode="livemax")
rollout_events_total = Counter("edgegw_rollout_events_total", "Rollout steps passed, promotions, rollbacks",
                               ["pool", "event"], registry=registry)

# Below this, a p99 difference is noise on a fast backend, never a reason to roll back.
LATENCY_FLOOR_S = 0.010
_SAMPLES = 2000  # latencies kept per group per step, for its p99


@dataclass(frozen=True)
class RolloutConfig:
    """A pool's `rollout:` section."""

    canary_group: str = "canary"  # every other endpoint of the pool is stable
    steps: tuple[float, ...] = (5.0, 25.0, 50.0, 100.0)  # canary share in percent, in order
    interval_s: float = 60.0  # least time per step
    min_requests: int = 100  # canary requests per step before it is judged
    max_error_rate_increase: float = 0.02  # canary 5xx rate minus stable's, at most
    max_latency_ratio: float = 1.5  # canary p99 over stable p99, at most
    max_ttft_ratio: float = 1.5  # streams: canary p99 time to first token over stable's, at most


class GroupStats:
    """Outcomes of one group's attempts during one step."""

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latencies: deque[float] = deque(maxlen=_SAMPLES)
        self.first_bytes: deque[float] = deque(maxlen=_SAMPLES)  # streams only

    def record(self, ok: bool, latency_s: float | None) -> None:
        self.requests += 1
        if not ok:
            self.errors += 1
        elif latency_s is not None:
            self.latencies.append(latency_s)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def p99_s(self) -> float | None:
        return _p99(self.latencies)

    @property
    def ttft_p99_s(self) -> float | None:
        return _p99(self.first_bytes)

    def describe(self) -> dict[str, Any]:
        p99, ttft = self.p99_s, self.ttft_p99_s
        return {"requests": self.requests, "errors": self.errors, "error_rate": round(self.error_rate, 4),
                "p99_ms": None if p99 is None else round(p99 * 1000, 3),
                "ttft_p99_ms": None if ttft is None else round(ttft * 1000, 3)}


def _p99(samples: deque[float]) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


class BackendRollout:
    """The state machine: running (step i) -> promoted | rolled_back (also by hand: promote/abort)."""

    def __init__(self, pool: str, config: RolloutConfig) -> None:
        self.pool = pool
        self.config = config
        self.state = "running"
        self.step = 0
        self.share = config.steps[0] / 100.0
        self.step_started = time.monotonic()
        self.canary = GroupStats()
        self.stable = GroupStats()
        self.baseline = GroupStats()  # stable over the whole rollout: the yardstick at a 100% step
        self.exposed = 0  # canary attempts over the whole rollout
        self.events: list[dict[str, Any]] = []
        # Told (state, why) of a verdict reached here, so the other workers follow it; None: not shared.
        self.decided: Callable[[str, str], None] | None = None
        self._event("started", f"canary group {config.canary_group!r} at {config.steps[0]:g}%")

    # --- the request path --------------------------------------------------------------------

    def narrow(self, candidates: list[Any]) -> list[Any]:
        """The candidates of the group this attempt goes to (the other group's when it has none)."""
        if self.state == "running":
            to_canary = random.random() < self.share
        else:
            to_canary = self.state == "promoted"
        canary = self.config.canary_group
        chosen = [e for e in candidates if (e.group == canary) is to_canary]
        return chosen or candidates

    def record(self, endpoint: Any, ok: bool, latency_s: float | None) -> None:
        if self.state != "running":
            return
        if endpoint.group == self.config.canary_group:
            self.canary.record(ok, latency_s)
            self.exposed += 1
            if self.canary.requests >= self.config.min_requests:
                self._judge()
        else:
            self.stable.record(ok, latency_s)
            self.baseline.record(ok, latency_s)

    def first_byte(self, endpoint: Any, seconds: float) -> None:
        """A stream's time to its first byte (the forwarder reports it when the answer starts)."""
        if self.state == "running":
            group = self.canary if endpoint.group == self.config.canary_group else self.stable
            group.first_bytes.append(seconds)
            if group is self.stable:
                self.baseline.first_bytes.append(seconds)

    # --- judgement -----------------------------------------------------------------------------

    def verdict(self) -> str | None:
        """Why the canary fails this step, or None while it holds up."""
        cfg = self.config
        stable = self.stable if self.stable.requests >= cfg.min_requests else self.baseline
        increase = self.canary.error_rate - stable.error_rate
        if increase > cfg.max_error_rate_increase:
            return (f"error rate {self.canary.error_rate:.1%} vs stable {stable.error_rate:.1%} "
                    f"(allowed +{cfg.max_error_rate_increase:.1%})")
        for label, mine, theirs, ratio in (
                ("p99 latency", self.canary.p99_s, stable.p99_s, cfg.max_latency_ratio),
                ("p99 time to first token", self.canary.ttft_p99_s, stable.ttft_p99_s, cfg.max_ttft_ratio)):
            if mine is not None and theirs is not None and mine > LATENCY_FLOOR_S and mine > theirs * ratio:
                return f"{label} {mine * 1000:.0f} ms vs stable {theirs * 1000:.0f} ms (allowed x{ratio:g})"
        return None

    def _judge(self) -> None:
        reason = self.verdict()
        if reason is not None:
            self.rollback(f"step {self.step + 1} ({self.share:.0%}) failed: {reason}")
        elif time.monotonic() - self.step_started >= self.config.interval_s:
            self._advance()

    def _advance(self) -> None:
        passed = f"step {self.step + 1} ({self.share:.0%}) passed: {self._figures()}"
        if self.step + 1 >= len(self.config.steps):
            self.promote(passed)
            return
        self._event("step_passed", passed)
        self.step += 1
        self.share = self.config.steps[self.step] / 100.0
        self.step_started = time.monotonic()
        self.canary, self.stable = GroupStats(), GroupStats()
        rollout_share.labels(self.pool).set(self.share)

    def promote(self, why: str = "promoted by hand") -> None:
        if self.follow("promoted", why) and self.decided is not None:
            self.decided("promoted", why)

    def rollback(self, why: str = "aborted by hand") -> None:
        if self.follow("rolled_back", why) and self.decided is not None:
            self.decided("rolled_back", why)

    def follow(self, state: str, why: str) -> bool:
        """End with `state` (promoted | rolled_back), here or as another worker decided; False if ended."""
        if self.state != "running" or state not in ("promoted", "rolled_back"):
            return False
        self.state, self.share = state, 1.0 if state == "promoted" else 0.0
        self._event(state, why)
        return True

    def _figures(self) -> str:
        c, s = self.canary.describe(), self.stable.describe()
        return (f"canary {c['requests']} req, {c['error_rate']:.1%} errors, p99 {c['p99_ms']} ms; "
                f"stable {s['requests']} req, {s['error_rate']:.1%} errors, p99 {s['p99_ms']} ms")

    def _event(self, kind: str, detail: str) -> None:
        self.events.append({"at": time.time(), "event": kind, "detail": detail})
        del self.events[:-50]
        rollout_events_total.labels(self.pool, kind).inc()
        rollout_share.labels(self.pool).set(self.share)
        level = logging.WARNING if kind == "rolled_back" else logging.INFO
        log.log(level, "rollout of pool %s: %s: %s", self.pool, kind.replace("_", " "), detail)

    def describe(self) -> dict[str, Any]:
        return {"pool": self.pool, "state": self.state, "step": self.step + 1, "steps": list(self.config.steps),
                "share": self.share, "exposed": self.exposed, "canary_group": self.config.canary_group,
                "canary": self.canary.describe(), "stable": self.stable.describe(),
                "events": list(reversed(self.events))}
