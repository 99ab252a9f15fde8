"""The one canary judge: its two tests against known figures, and how often it is wrong both ways on
the seeded traffic model of bench/judge.py (the same runs `make bench-judge` prints, fewer of them)."""

from __future__ import annotations

import importlib.util
import math
import random
import sys
from types import ModuleType

import pytest

from edgecore.judge import FAIL, INCONCLUSIVE, PASS, Judge, LatencyCheck, RateCheck, Rules
from edgecore.judge.stats import allowed, rate_higher, shifted_mann_whitney
from testkit.harness import ROOT


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_judge", ROOT / "bench" / "judge.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_judge"] = module
    spec.loader.exec_module(module)
    return module


def test_fisher_matches_the_hypergeometric_tail() -> None:
    # 3 of 3 events in the canary's 10 of 20 trials: C(10,3) / C(20,3)
    assert rate_higher(3, 10, 0, 10) == pytest.approx(math.comb(10, 3) / math.comb(20, 3))
    assert rate_higher(0, 10, 5, 10) == 1.0 and rate_higher(1, 10, 1, 10) > 0.5
    # A dead canary at 20 requests against a clean stable: beyond doubt; two errors in 50: not yet.
    assert rate_higher(20, 20, 0, 180) < 1e-20
    assert rate_higher(2, 50, 0, 449) > 0.001


def test_mann_whitney_is_rank_based_and_one_sided() -> None:
    rng = random.Random(3)
    stable = [rng.lognormvariate(0, 0.3) for _ in range(300)]
    same = [rng.lognormvariate(0, 0.3) for _ in range(100)]
    slower = [2 * rng.lognormvariate(0, 0.3) for _ in range(100)]
    p_same, effect_same = shifted_mann_whitney(same, stable)
    assert p_same > 0.01 and 0.4 < effect_same < 0.6
    assert shifted_mann_whitney(slower, stable)[0] < 1e-9
    # Allowed 1.5x, twice as slow still fails; the same distribution with 5 huge outliers does not.
    assert shifted_mann_whitney(slower, allowed(stable, 1.5, 0.0))[0] < 1e-3
    assert shifted_mann_whitney([*same[:95], 50, 60, 70, 80, 90], allowed(stable, 1.5, 0.0))[0] > 0.5


def test_thin_data_is_inconclusive_and_failed_looks_count_in_a_row() -> None:
    rules = Rules(rates=(RateCheck("5xx", "5xx rate", 0.01),), min_requests=20, failed_looks=2)
    judge = Judge(rules, clock=lambda: 0.0)
    for _ in range(200):
        judge.stable.add()
    for i in range(20):
        judge.canary.add(*(("5xx",) if i < 2 else ()))
    assert judge.look().verdict == INCONCLUSIVE  # 10% vs 0%, but two errors in twenty prove little
    for _ in range(20):
        judge.canary.add("5xx")
    first = judge.look()
    assert first.verdict == INCONCLUSIVE and "failing look 1 of 2" in first.why
    assert judge.look().verdict == FAIL
    healthy = Judge(Rules(latencies=(LatencyCheck("lat", "latency", 1.5, 0.01),), min_requests=20))
    for i in range(40):
        healthy.stable.sample("lat", 0.05 + i / 1000)
        healthy.canary.sample("lat", 0.05 + i / 1000 + (5.0 if i == 7 else 0.0))  # one GC pause
        healthy.canary.add()
        healthy.stable.add()
    assert healthy.look().verdict == PASS


def test_measured_both_ways_on_the_traffic_model() -> None:
    """Seeded runs of the bench's model (fewer than `make bench-judge`): no healthy canary of any kind
    is rolled back; broken ones are, within the bounds the issue sets."""
    b = bench()
    for kind, (run, min_requests) in b.KINDS.items():
        healthy = [run(i, "A/A") for i in range(20)]
        assert all(r.state == "promoted" for r in healthy), (kind, [r.why for r in healthy if r.state != "promoted"])
        dead = [run(100 + i, "dead") for i in range(10)]
        assert all(r.state == "rolled_back" and r.exposed <= min_requests for r in dead), (kind, dead)
        errors = [run(200 + i, "+5 pts 5xx") for i in range(10)]
        assert all(r.state == "rolled_back" for r in errors), (kind, errors)
        assert sum(r.exposed <= 200 for r in errors) >= 9, (kind, [r.exposed for r in errors])
        if kind != "plugin canary":
            slow = [run(300 + i, "2x latency") for i in range(10)]
            assert all(r.state == "rolled_back" and "latency" in r.why for r in slow), (kind, slow)
