"""One judge for every canary (plugin versions, policy versions, backend rollouts): two arms, the
canary and the stable one, fed the same kind of outcomes over the whole canary (evidence is never
thrown away when a step passes); looks at them now and then; and answers `pass`, `fail` or
`inconclusive` in one vocabulary.

- An error rate (5xx, plugin failures, 429, other 4xx, ...) fails when the canary's is higher than
  stable's at the look's level (the one-sided Fisher exact test for two proportions) *and* the data
  do not show the increase to be within the check's minimum effect (`max_increase`: its upper 90%
  bound is above it). Significant and shown small: no. Large but thin: no.
- A latency (upstream, gateway overhead, time to first token) fails when the canary's values tend to
  exceed stable's, each stable value first allowed `max_ratio` times itself and `floor_s` more at
  least (a one-sided Mann-Whitney U test at the look's level). The whole distribution votes; one slow
  outlier is one rank among hundreds.
- How sure: `confidence` is the canary's as a whole: a canary as good as stable should be rolled
  back with a chance of at most 1 - confidence over all its checks and looks. A look tests each error
  count (`RateCheck.common` false: 5xx, failures, which a healthy system almost never has) and each
  latency at (1 - confidence) / 2, and each count that is common on a healthy system (429, other
  4xx, local answers) at (1 - confidence) / 50: its count drifts like a random walk between looks, so
  every look is a new chance to cross a fixed line (measured: about ten times its level over a canary),
  while a rare count can only cross when one of its few events arrives. The split is calibrated by
  `make bench-judge` (docs/policy-reload.md says why no bound that holds by construction is used).
- Passing needs evidence; thin data is `inconclusive`: a rate not yet shown within its allowed
  increase (nor significantly higher), a latency that looks worse than allowed but not significantly
  so, or a stable arm with too little traffic to compare with. The caller extends the step (up to
  `max_extension` times `min_requests` of the step's own canary requests), since only significant
  evidence fails one.
- `failed_looks` consecutive failing looks are needed to fail (Argo Rollouts' failure limit): 1 by
  default.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

from edgecore.judge.stats import allowed, increase_bound, quantile, rate_higher, shifted_mann_whitney

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
SAMPLES = 2000  # latency values kept per arm and metric (the most recent)
LOOK_INTERVAL_S = 0.01  # looks at least this far apart (each sorts the samples): a bound on their cost
LOOK_GROWTH = 1.1  # each look waits until the canary has this many times the outcomes of the last one
MIN_SAMPLES = 12  # latency values per arm before a latency check can be conclusive
# A look's level per check, as a share of 1 - confidence (calibrated by bench/judge.py, see above).
RARE_SHARE = 0.5  # error counts and latencies
COMMON_SHARE = 0.02  # counts common on a healthy system
SHOWN = NormalDist().inv_cdf(0.9)  # an increase counts as shown within its minimum effect at 90%


@dataclass(frozen=True)
class RateCheck:
    """An outcome (`kind`, as counted by `Arm.add`) whose rate must not grow by more than `max_increase`.
    `common`: the outcome is common on a healthy system (429s, other 4xx, local answers), so each look
    tests it at a smaller level (see the module's docstring)."""

    kind: str
    label: str
    max_increase: float
    common: bool = False


@dataclass(frozen=True)
class LatencyCheck:
    """A sampled value (`metric`) that may grow to `max_ratio` times stable's, or by `floor_s`, not more."""

    metric: str
    label: str
    max_ratio: float
    floor_s: float


@dataclass(frozen=True)
class Rules:
    """How one canary is judged: what it is compared on and how sure a verdict must be."""

    rates: tuple[RateCheck, ...] = ()
    latencies: tuple[LatencyCheck, ...] = ()
    min_requests: int = 100  # canary outcomes before the first look
    confidence: float = 0.99  # of the canary as a whole: at most 1 - confidence of healthy canaries fail
    failed_looks: int = 1  # consecutive failing looks that fail the step
    max_extension: float = 10.0  # an inconclusive step waits for up to this many times min_requests


@dataclass(frozen=True)
class Look:
    """One judgement: `verdict` is PASS, FAIL or INCONCLUSIVE; `why` says which check and its figures."""

    verdict: str
    why: str


class Arm:
    """One side's outcomes: a count per kind and recent values per metric."""

    __slots__ = ("requests", "counts", "samples")

    def __init__(self) -> None:
        self.requests = 0
        self.counts: dict[str, int] = {}
        self.samples: dict[str, deque[float]] = {}

    def add(self, *kinds: str) -> None:
        """One outcome, of none or some kinds (an error, a 429, a local answer, ...)."""
        self.requests += 1
        counts = self.counts
        for kind in kinds:
            counts[kind] = counts.get(kind, 0) + 1

    def sample(self, metric: str, value: float) -> None:
        values = self.samples.get(metric)
        if values is None:
            values = self.samples[metric] = deque(maxlen=SAMPLES)
        values.append(value)

    def rate(self, kind: str) -> float:
        return self.counts.get(kind, 0) / self.requests if self.requests else 0.0

    def quantile_ms(self, metric: str, q: float) -> float | None:
        """For display: the q-quantile of a metric in milliseconds."""
        value = quantile(self.samples.get(metric, ()), q)
        return None if value is None else round(value * 1000, 3)


class Judge:
    """The canary and stable arms of one canary, judged by `rules`; `restart` marks a new step."""

    def __init__(self, rules: Rules, clock: Callable[[], float] = time.monotonic) -> None:
        self.rules = rules
        self.clock = clock
        self.canary = Arm()
        self.stable = Arm()
        self.failed_in_row = 0
        self.step_from = 0  # the canary's outcomes before this step
        self._next = rules.min_requests
        self._last = -1e18

    def restart(self) -> None:
        """A new step: it needs `min_requests` canary outcomes of its own before it can pass."""
        self.step_from = self.canary.requests
        self._next = min(self._next, self.step_from + self.rules.min_requests)

    @property
    def step_requests(self) -> int:
        return self.canary.requests - self.step_from

    def due(self) -> bool:
        """Whether the canary has enough new outcomes for another look (cheap: called per outcome)."""
        return self.canary.requests >= self._next and self.clock() - self._last >= LOOK_INTERVAL_S

    def step_judged(self) -> bool:
        """Whether this step has seen enough canary outcomes of its own to pass."""
        return self.step_requests >= self.rules.min_requests

    def extended_enough(self) -> bool:
        """Whether an inconclusive step has waited as long as it may."""
        return self.step_requests >= self.rules.max_extension * self.rules.min_requests

    def look(self) -> Look:
        """Judge the canary so far. A FAIL counts only after `failed_looks` failing looks in a row
        (the ones before it answer INCONCLUSIVE)."""
        rules = self.rules
        self._next = max(self.canary.requests + 1, int(self.canary.requests * LOOK_GROWTH))
        self._last = self.clock()
        found = self._compare()
        if found.verdict != FAIL:
            self.failed_in_row = 0
            return found
        self.failed_in_row += 1
        if self.failed_in_row < rules.failed_looks:
            return Look(INCONCLUSIVE, f"{found.why} (failing look {self.failed_in_row} of {rules.failed_looks})")
        return found

    def _compare(self) -> Look:
        rules, canary, stable = self.rules, self.canary, self.stable
        budget = 1 - rules.confidence
        doubts: list[str] = []
        for check in rules.rates:
            mine, theirs = canary.counts.get(check.kind, 0), stable.counts.get(check.kind, 0)
            rate, base = canary.rate(check.kind), stable.rate(check.kind)
            bound = increase_bound(mine, canary.requests, theirs, stable.requests, SHOWN)
            if bound <= check.max_increase:
                continue  # shown within the allowed increase
            figures = (f"{check.label} {rate:.1%} of {canary.requests} vs stable {base:.1%} of {stable.requests} "
                       f"(allowed +{check.max_increase:.1%})")
            if stable.requests < rules.min_requests:
                doubts.append(f"{figures}: stable has too few requests")
                continue
            level = budget * (COMMON_SHARE if check.common else RARE_SHARE)
            # No increase at all is never significant (and skipping it bounds a look's cost, below).
            p = rate_higher(mine, canary.requests, theirs, stable.requests) if rate > base else 1.0
            if p < level:
                return Look(FAIL, f"{figures}, significant (p {p:.2g} < {level:.2g})")
            doubts.append(f"{figures}: not significant, nor shown within the allowed increase yet (up to "
                          f"+{bound:.1%})")
        for lat in rules.latencies:
            values, base_values = canary.samples.get(lat.metric, ()), stable.samples.get(lat.metric, ())
            if len(values) < MIN_SAMPLES:
                continue  # nothing to judge on (a canary that fails everything is caught by its rates)
            if len(base_values) < MIN_SAMPLES:
                doubts.append(f"{lat.label}: stable has too few values")
                continue
            p, effect = shifted_mann_whitney(list(values), allowed(base_values, lat.max_ratio, lat.floor_s))
            if effect <= 0.5:
                continue
            figures = (f"{lat.label} p50 {canary.quantile_ms(lat.metric, 0.5)} ms / p90 "
                       f"{canary.quantile_ms(lat.metric, 0.9)} ms vs stable p50 {stable.quantile_ms(lat.metric, 0.5)}"
                       f" ms / p90 {stable.quantile_ms(lat.metric, 0.9)} ms (allowed x{lat.max_ratio:g} or "
                       f"+{lat.floor_s * 1000:g} ms)")
            level = budget * RARE_SHARE
            if p < level:
                return Look(FAIL, f"{figures}, slower in {effect:.0%} of pairs, significant (p {p:.2g} < {level:.2g})")
            doubts.append(f"{figures}, not significant yet")
        if doubts:
            return Look(INCONCLUSIVE, "; ".join(doubts))
        return Look(PASS, f"canary {canary.requests} requests, stable {stable.requests}: no significant regression")
