"""A plugin canary's judge: on each route, the requests the canary version handled against those the
stable version handled, by the project's one canary judge (`edgecore.judge`). Compared are plugin
failures (traps, timeouts, fuel), the plugin's own local answers, and the requests' 4xx and 5xx."""

from __future__ import annotations

import time
from collections.abc import Callable

from edgecore.judge import FAIL, INCONCLUSIVE, Judge, RateCheck, Rules
from wasm_plugins.config import CanaryConfig

LOCAL, C4XX, C5XX, FAILED = 1, 2, 4, 8  # how a request was answered: a bit set (`outcome`)
KINDS = ("local", "4xx", "5xx", "failure")
_BY_BITS = tuple(tuple(k for i, k in enumerate(KINDS) if bits & (1 << i)) for bits in range(16))


def outcome(status: int, local: bool) -> int:
    return (LOCAL if local else 0) | (C4XX if 400 <= status < 500 else C5XX if status >= 500 else 0)


def rules(cfg: CanaryConfig) -> Rules:
    return Rules(rates=(RateCheck("failure", "failed", cfg.max_failure_rate),
                        RateCheck("local", "answered locally", cfg.max_status_shift, common=True),
                        RateCheck("4xx", "answered 4xx", cfg.max_status_shift, common=True),
                        RateCheck("5xx", "answered 5xx", cfg.max_status_shift)),
                 min_requests=cfg.min_requests, confidence=cfg.confidence, failed_looks=cfg.failed_looks)


class CanaryJudge:
    """`observe` answers ("rollback", why) or ("promote", why) when the canary is decided, else None."""

    def __init__(self, cfg: CanaryConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.rules = rules(cfg)
        self.clock = clock
        self.routes: dict[str, Judge] = {}
        self.canary_requests = 0
        self._promote_look = cfg.promote_after

    def observe(self, to_canary: bool, route: str, bits: int) -> tuple[str, str] | None:
        judge = self.routes.get(route)
        if judge is None:
            judge = self.routes[route] = Judge(self.rules, self.clock)
        (judge.canary if to_canary else judge.stable).add(*_BY_BITS[bits])
        if not to_canary:
            return None
        self.canary_requests += 1
        if judge.due():
            look = judge.look()
            if look.verdict == FAIL:
                return "rollback", f"canary {look.why} on route {route!r}"
        if self._promote_look and self.canary_requests >= self._promote_look:
            return self._promotion()
        return None

    def _promotion(self) -> tuple[str, str] | None:
        """After `promote_after` canary requests: promote unless a route's evidence is still open
        (then look again a quarter of `min_requests` later)."""
        self._promote_look = self.canary_requests + max(1, self.cfg.min_requests // 4)
        for route, judge in self.routes.items():
            if judge.canary.requests < self.cfg.min_requests:
                continue
            look = judge.look()
            if look.verdict == FAIL:
                return "rollback", f"canary {look.why} on route {route!r}"
            if look.verdict == INCONCLUSIVE and not judge.extended_enough():
                return None
        return "promote", f"{self.canary_requests} requests without a significant regression"
