"""The two tests a canary judge uses, in plain Python (no numpy on the request path's side).

- `rate_higher`: whether a proportion is higher in one sample than in another: the one-sided
  Fisher exact test. Exact at the edges a z-test (or a score interval) gets wrong: no errors at all
  on one side, every request an error, a few dozen requests; and on the safe side of its level.
- `increase_bound`: how large the increase of a proportion may still be (an upper confidence bound
  of the difference, Newcombe's hybrid score interval): a minimum effect excuses an increase only
  when the data show it is that small.
- `shifted_mann_whitney`: the one-sided Mann-Whitney U test of "the canary's values tend to be
  larger than the stable ones, even after the stable ones were allowed a tolerance". Rank based: one
  GC pause is one rank, not a verdict.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Sequence
from statistics import NormalDist

_NORMAL = NormalDist()


def _log_choose(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def rate_higher(k_canary: int, n_canary: int, k_stable: int, n_stable: int) -> float:
    """p-value of the one-sided Fisher exact test that the canary's rate k/n is higher than stable's:
    the chance, were both rates the same, of the canary holding k_canary or more of the
    k_canary + k_stable events among its n_canary of the n_canary + n_stable trials."""
    total, events = n_canary + n_stable, k_canary + k_stable
    if n_canary == 0 or events == 0 or k_canary == 0:
        return 1.0
    base = _log_choose(total, n_canary)
    p = 0.0
    for x in range(k_canary, min(events, n_canary) + 1):
        if events - x > n_stable:
            continue
        term = math.exp(_log_choose(events, x) + _log_choose(total - events, n_canary - x) - base)
        p += term
        if term < p * 1e-12:
            break  # the terms only shrink from here (past the mode)
    return min(1.0, p)


def _wilson(k: int, n: int, z: float) -> tuple[float, float]:
    """The Wilson score interval of a proportion k/n at z (well behaved at 0 and n, unlike k/n +- z*se)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre, spread = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    scale = 1 + z * z / n
    return max(0.0, (centre - spread) / scale), min(1.0, (centre + spread) / scale)


def increase_bound(k_canary: int, n_canary: int, k_stable: int, n_stable: int, z: float) -> float:
    """Upper confidence bound (one-sided, at the normal quantile z) of the canary's rate minus
    stable's: Newcombe's hybrid score interval (1998, method 10), which keeps its coverage with no
    events or only events on a side, where the Wald interval collapses to a point."""
    p_canary = k_canary / n_canary if n_canary else 0.0
    p_stable = k_stable / n_stable if n_stable else 0.0
    upper_canary = _wilson(k_canary, n_canary, z)[1]
    lower_stable = _wilson(k_stable, n_stable, z)[0]
    return p_canary - p_stable + math.sqrt((upper_canary - p_canary) ** 2 + (p_stable - lower_stable) ** 2)


def allowed(stable: Sequence[float], ratio: float, floor: float) -> list[float]:
    """The stable values with the tolerance added: each may grow `ratio` times, and by `floor` at
    least (differences under it are never a regression)."""
    return [max(v * ratio, v + floor) for v in stable]


def shifted_mann_whitney(canary: Sequence[float], stable: Sequence[float]) -> tuple[float, float]:
    """(p-value, common-language effect) of the one-sided Mann-Whitney U test that `canary` values
    tend to exceed `stable` values. The effect is P(canary > stable) + P(tie)/2: 0.5 when they are
    alike. Normal approximation with the tie correction and a continuity correction; meant for
    samples of a dozen values or more."""
    n, m = len(canary), len(stable)
    if n == 0 or m == 0:
        return 1.0, 0.5
    ordered = sorted(stable)
    u = 0.0
    for x in canary:
        below = bisect_left(ordered, x)
        u += below + 0.5 * (bisect_right(ordered, x, below) - below)
    big = n + m
    ties = sum(t * t * t - t for t in Counter([*canary, *stable]).values() if t > 1)
    variance = n * m / 12.0 * ((big + 1) - ties / (big * (big - 1)))
    effect = u / (n * m)
    if variance <= 0:
        return (0.0 if effect > 0.5 else 1.0), effect
    z = (u - n * m / 2.0 - 0.5) / math.sqrt(variance)
    return 1.0 - _NORMAL.cdf(z), effect


def quantile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (nearest rank) of `values`, or None when there are none: for display only."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]
