"""Backend rollouts: a pool's canary endpoint group takes a growing share of traffic, step by step,
judged against the stable group by the project's one canary judge (`edgecore.judge`: error rate,
latency and a stream's time to first token); a failed step rolls back at once, passing every step
promotes.

Each worker judges the traffic it sees. A verdict (its judge's, or an operator's through one
worker's admin API) is told to `decided`, which `gateway.policy.rollout_sync` shares through a state
file beside the policy so that every worker follows it (`follow`). State lives on the `Pool`, so a
policy reload that leaves the pool unchanged keeps the rollout where it is.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Gauge

from edgecore.judge import (
    PROMOTED,
    ROLLED_BACK,
    RUNNING,
    STEP_PASSED,
    Arm,
    LatencyCheck,
    RateCheck,
    Rules,
    Steps,
)
from gateway.metrics import registry

if TYPE_CHECKING:
    from gateway.upstream.pool import Endpoint

log = logging.getLogger("edgegw.rollout")

rollout_share = Gauge("edgegw_rollout_canary_share", "Share of a pool's traffic sent to its canary group "
                      "(0 after a rollback, 1 after promotion)", ["pool"], registry=registry,
                      multiprocess_mode="livemax")
rollout_events_total = Counter("edgegw_rollout_events_total", "Rollout steps passed, promotions, rollbacks",
                               ["pool", "event"], registry=registry)

# Below this, a latency difference is noise on a fast backend, never a reason to roll back.
LATENCY_FLOOR_S = 0.010


@dataclass(frozen=True)
class RolloutConfig:
    """A pool's `rollout:` section."""

    canary_group: str = "canary"  # every other endpoint of the pool is stable
    steps: tuple[float, ...] = (5.0, 25.0, 50.0, 100.0)  # canary share in percent, in order
    interval_s: float = 60.0  # least time per step
    min_requests: int = 100  # canary requests per step before it is judged
    max_error_rate_increase: float = 0.02  # allowed increase of the 5xx rate (shown within it: no verdict)
    max_latency_ratio: float = 1.5  # canary latency over stable's (the distributions), at most
    max_ttft_ratio: float = 1.5  # streams: canary time to first token over stable's, at most
    confidence: float = 0.99  # of the rollout: at most 1 - confidence of healthy ones roll back
    failed_looks: int = 1  # consecutive failing looks that fail a step

    def rules(self) -> Rules:
        return Rules(rates=(RateCheck("error", "error rate", self.max_error_rate_increase),),
                     latencies=(LatencyCheck("latency", "latency", self.max_latency_ratio, LATENCY_FLOOR_S),
                                LatencyCheck("ttft", "time to first token", self.max_ttft_ratio, LATENCY_FLOOR_S)),
                     min_requests=self.min_requests, confidence=self.confidence, failed_looks=self.failed_looks)


def describe_group(arm: Arm) -> dict[str, Any]:
    return {"requests": arm.requests, "errors": arm.counts.get("error", 0), "error_rate": round(arm.rate("error"), 4),
            "p50_ms": arm.quantile_ms("latency", 0.5), "p99_ms": arm.quantile_ms("latency", 0.99),
            "ttft_p99_ms": arm.quantile_ms("ttft", 0.99)}


class BackendRollout:
    """The state machine: running (step i) -> promoted | rolled_back (also by hand: promote/abort)."""

    def __init__(self, pool: str, config: RolloutConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.pool = pool
        self.config = config
        self.run = Steps(config.steps, config.rules(), config.interval_s, clock)
        self.events: list[dict[str, Any]] = []
        # Told (state, why) of a verdict reached here, so the other workers follow it; None: not shared.
        self.decided: Callable[[str, str], None] | None = None
        self._event("started", f"canary group {config.canary_group!r} at {config.steps[0]:g}%")

    @property
    def state(self) -> str:
        return self.run.state

    @property
    def share(self) -> float:
        return self.run.share

    # --- the request path --------------------------------------------------------------------

    def narrow(self, candidates: list[Endpoint]) -> list[Endpoint]:
        """The candidates of the group this attempt goes to (the other group's when it has none)."""
        run = self.run
        to_canary = random.random() < run.share if run.state == RUNNING else run.state == PROMOTED
        canary = self.config.canary_group
        chosen = [e for e in candidates if (e.group == canary) is to_canary]
        return chosen or candidates

    def record(self, endpoint: Endpoint, ok: bool, latency_s: float | None) -> None:
        to_canary = endpoint.group == self.config.canary_group
        arm = self.run.arm(to_canary)
        if arm is None:
            return
        if not ok:
            arm.add("error")
        else:
            arm.add()
            if latency_s is not None:
                arm.sample("latency", latency_s)
        reached = self.run.counted(to_canary)
        if reached is not None:
            self._reached(*reached)

    def _reached(self, kind: str, why: str) -> None:
        run = self.run
        if kind == STEP_PASSED:
            self._event("step_passed", why)
            run.advance_to(run.step + 1)
            rollout_share.labels(self.pool).set(run.share)
            return
        try:
            self.promote(why) if kind == PROMOTED else self.rollback(why)
        except OSError:
            pass  # not shared with the other workers (logged by the recorder); decided here all the same

    def first_byte(self, endpoint: Endpoint, seconds: float) -> None:
        """A stream's time to its first byte (the forwarder reports it when the answer starts)."""
        arm = self.run.arm(endpoint.group == self.config.canary_group)
        if arm is not None:
            arm.sample("ttft", seconds)

    # --- verdicts ------------------------------------------------------------------------------

    def promote(self, why: str = "promoted by hand") -> None:
        """OSError (from `decided`) when the verdict holds here but could not be shared."""
        if self.follow(PROMOTED, why) and self.decided is not None:
            self.decided(PROMOTED, why)

    def rollback(self, why: str = "aborted by hand") -> None:
        if self.follow(ROLLED_BACK, why) and self.decided is not None:
            self.decided(ROLLED_BACK, why)

    def follow(self, state: str, why: str) -> bool:
        """End with `state` (promoted | rolled_back), here or as another worker decided; False if ended."""
        if state not in (PROMOTED, ROLLED_BACK) or not self.run.end(state):
            return False
        self.run.share = 1.0 if state == PROMOTED else 0.0
        self._event(state, why)
        return True

    def _event(self, kind: str, detail: str) -> None:
        self.events.append({"at": time.time(), "event": kind, "detail": detail})
        del self.events[:-50]
        rollout_events_total.labels(self.pool, kind).inc()
        rollout_share.labels(self.pool).set(self.run.share)
        level = logging.WARNING if kind == ROLLED_BACK else logging.INFO
        log.log(level, "rollout of pool %s: %s: %s", self.pool, kind.replace("_", " "), detail)

    def describe(self) -> dict[str, Any]:
        run = self.run
        return {"pool": self.pool, "state": run.state, "step": run.step + 1, "steps": list(self.config.steps),
                "share": run.share, "exposed": run.exposed, "canary_group": self.config.canary_group,
                "waiting": run.waiting, "canary": describe_group(run.judge.canary),
                "stable": describe_group(run.judge.stable), "events": list(reversed(self.events))}
