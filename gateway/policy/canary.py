"""Policy canary: a sticky share of callers (hash of issuer + subject) runs a new policy version while
the rest stay on the stable one; the share moves through steps, each judged against stable on the
same traffic mix by the project's one canary judge (`edgecore.judge`): 5xx, 429 and other 4xx rates,
gateway overhead and upstream latency.

Only requests that authenticated vote (or, on the canary, a caller whose token the stable version
accepts and the canary refused): the arm is picked from the token's claims before they are verified,
so an unverified claim may pick an arm but its outcome never counts (`vote`).

`PolicyCanary` is the state machine and the judge; `CanaryProxy` is the request-path entry point
while a canary runs (outside one, the stable proxy is called directly and nothing here costs a thing).
"""

from __future__ import annotations

import base64
import logging
import time
import zlib
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import orjson

from edgecore.judge import ROLLED_BACK, RUNNING, STEP_PASSED, Arm, LatencyCheck, RateCheck, Rules, Steps

if TYPE_CHECKING:
    from gateway.context import RequestContext
    from gateway.ingress.proxy import ProxyEndpoint

log = logging.getLogger("edgegw.policy")

OVERHEAD_FLOOR_S = 0.002  # differences below these are noise on a shared machine, never a verdict
LATENCY_FLOOR_S = 0.010


@dataclass(frozen=True)
class CanarySettings:
    steps: tuple[float, ...] = (1.0, 10.0, 50.0, 100.0)  # percent of callers, increasing
    min_requests: int = 100  # canary requests per step before it is judged
    min_step_s: float = 30.0  # least time per step before it can pass
    max_error_rate_increase: float = 0.01  # 5xx and plugin failures
    max_429_rate_increase: float = 0.05
    max_4xx_rate_increase: float = 0.05  # 4xx other than 429
    max_overhead_ratio: float = 2.0  # gateway overhead, canary over stable (the distributions)
    max_latency_ratio: float = 1.5  # upstream latency, canary over stable (the distributions)
    confidence: float = 0.99  # of the canary: at most 1 - confidence of healthy canaries roll back
    failed_looks: int = 1  # consecutive failing looks that fail a step
    max_extension: float = 10.0  # an inconclusive step waits for up to this many times min_requests

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
            elif name in ("min_requests", "failed_looks"):
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise ValueError(f"{name}: an integer of at least 1")
                values[name] = value
            elif name == "confidence":
                if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.5 <= value < 1:
                    raise ValueError("confidence: a number from 0.5 up to (not including) 1, such as 0.99")
                values[name] = float(value)
            elif name == "max_extension":
                if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 1:
                    raise ValueError("max_extension: a number of at least 1")
                values[name] = float(value)
            else:
                if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                    raise ValueError(f"{name}: a number of at least 0")
                values[name] = float(value)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["steps"] = list(self.steps)
        return out

    def rules(self) -> Rules:
        """What the judge compares, with these settings' tolerances."""
        return Rules(rates=(RateCheck("5xx", "5xx rate", self.max_error_rate_increase),
                            RateCheck("429", "429 rate", self.max_429_rate_increase, common=True),
                            RateCheck("4xx", "4xx rate", self.max_4xx_rate_increase, common=True)),
                     latencies=(LatencyCheck("overhead", "gateway overhead", self.max_overhead_ratio,
                                             OVERHEAD_FLOOR_S),
                                LatencyCheck("upstream", "upstream latency", self.max_latency_ratio, LATENCY_FLOOR_S)),
                     min_requests=self.min_requests, confidence=self.confidence, failed_looks=self.failed_looks,
                     max_extension=self.max_extension)


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


def describe_arm(arm: Arm) -> dict[str, Any]:
    n = arm.requests
    return {"requests": n, "error_rate": round(arm.rate("5xx"), 4), "rate_429": round(arm.rate("429"), 4),
            "rate_4xx": round(arm.rate("4xx"), 4),
            "p50_overhead_ms": arm.quantile_ms("overhead", 0.5), "p99_overhead_ms": arm.quantile_ms("overhead", 0.99),
            "p50_upstream_ms": arm.quantile_ms("upstream", 0.5), "p99_upstream_ms": arm.quantile_ms("upstream", 0.99)}


class PolicyCanary:
    """running -> promoted | rolled_back | aborted. `decided(state, why)` is called once, on a verdict."""

    def __init__(self, canary_id: str, version: str, settings: CanarySettings,
                 decided: Callable[[str, str], None], advanced: Callable[[int], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.id = canary_id
        self.version = version
        self.settings = settings
        self.decided = decided
        self.advanced = advanced  # told when this judge passes a step (so every worker moves with it)
        self.run = Steps(settings.steps, settings.rules(), settings.min_step_s, clock)
        self.started_at = time.time()
        self.events: list[dict[str, Any]] = []
        self.event("started", f"version {version} for {self.share:.0%} of callers")

    @property
    def state(self) -> str:
        return self.run.state

    @state.setter
    def state(self, value: str) -> None:
        self.run.state = value

    @property
    def step(self) -> int:
        return self.run.step

    @property
    def share(self) -> float:
        return self.run.share

    @property
    def exposed(self) -> int:
        return self.run.exposed

    def takes(self, scope_headers: list[tuple[bytes, bytes]]) -> bool:
        caller = token_caller(scope_headers)
        return caller is not None and caller_bucket(*caller) < self.share

    def record(self, to_canary: bool, status: int, overhead_s: float, upstream_s: float) -> None:
        """One request that may vote (see `CanaryProxy`), on either arm."""
        arm = self.run.arm(to_canary)
        if arm is None:
            return
        if status >= 500:
            arm.add("5xx")
        elif status == 429:
            arm.add("429")
        elif status >= 400:
            arm.add("4xx")
        else:
            arm.add()
            arm.sample("upstream", upstream_s)
        arm.sample("overhead", overhead_s)
        reached = self.run.counted(to_canary)
        if reached is not None:
            self._reached(*reached)

    def _reached(self, kind: str, why: str) -> None:
        if kind != STEP_PASSED:
            self.finish(kind, why)
            return
        self.advance_to(self.step + 1, why)
        if self.advanced is not None:
            self.advanced(self.step)

    def advance_to(self, step: int, why: str) -> None:
        """Move to step `step` (0-based; here, or a step another worker's judge passed)."""
        if self.state == RUNNING and self.step < step < len(self.settings.steps):
            self.event("step_passed", why)
            self.run.advance_to(step)

    def finish(self, state: str, why: str) -> None:
        """End with a verdict (here, or read from another worker); the first verdict wins."""
        if self.run.end(state):
            self.event(state, why)
            self.decided(state, why)

    def event(self, kind: str, detail: str) -> None:
        self.events.append({"at": time.time(), "event": kind, "detail": detail})
        level = logging.WARNING if kind == ROLLED_BACK else logging.INFO
        log.log(level, "policy canary %s: %s: %s", self.version, kind.replace("_", " "), detail)

    def describe(self) -> dict[str, Any]:
        judge = self.run.judge
        return {"id": self.id, "version": self.version, "state": self.state, "step": self.step + 1,
                "share": self.share, "exposed": self.exposed, "started_at": self.started_at,
                "waiting": self.run.waiting, "settings": self.settings.to_dict(),
                "canary": describe_arm(judge.canary), "stable": describe_arm(judge.stable),
                "events": list(reversed(self.events))}


# The request the proxy just finished, handed back to the `CanaryProxy` that called it (the same task,
# so the value set inside the awaited proxy is the one read after it).
_OUTCOME: ContextVar[RequestContext | None] = ContextVar("edgegw_canary_outcome", default=None)


class _Outcome:
    """The canary's `RequestObserver` on both proxies: notes each finished request for `CanaryProxy`."""

    def begin(self, ctx: RequestContext) -> None:
        pass

    def end(self, ctx: RequestContext) -> None:
        _OUTCOME.set(ctx)


class CanaryProxy:
    """The inference entry point while a canary runs: each request to its caller's version, and the
    outcome of each request that may vote to the judge (its status, and the overhead and upstream
    time the proxy measured)."""

    def __init__(self, canary: PolicyCanary, stable: ProxyEndpoint, candidate: ProxyEndpoint,
                 genuine: Callable[[str | None], Awaitable[bool]]) -> None:
        self.canary = canary
        self.stable = stable
        self.candidate = candidate
        self.genuine = genuine  # whether an Authorization header's token verifies under the stable version
        self._seen = _Outcome()
        for proxy in (stable, candidate):
            proxy.observers = (*proxy.observers, self._seen)

    def detach(self) -> None:
        """The canary ended: the proxies stop reporting outcomes."""
        for proxy in (self.stable, self.candidate):
            proxy.observers = tuple(o for o in proxy.observers if o is not self._seen)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        canary = self.canary
        to_canary = canary.state == RUNNING and canary.takes(scope["headers"])
        mark = _OUTCOME.set(None)
        try:
            await (self.candidate if to_canary else self.stable)(scope, receive, send)
            ctx = _OUTCOME.get()
        finally:
            _OUTCOME.reset(mark)
        if ctx is None or canary.state != RUNNING or not await self.votes(ctx, to_canary):
            return
        overhead = ctx.overhead_ms() / 1000.0
        total = time.perf_counter() - ctx.started
        canary.record(to_canary, ctx.status, overhead, max(0.0, total - overhead))

    async def votes(self, ctx: RequestContext, to_canary: bool) -> bool:
        """A request votes when its version authenticated the caller, or when the canary refused a
        caller the stable version accepts (the canary's own rules judged a genuine caller). Junk
        tokens vote on neither arm: they could otherwise veto a canary or mask a broken one."""
        if ctx.subject is not None:
            return True
        if not to_canary or ctx.status not in (401, 403):
            return False
        return await self.genuine(ctx.headers.get("authorization"))
