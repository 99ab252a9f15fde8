"""In process: how a pool picks an endpoint (gateway/upstream/pool.py), no gateway and no upstream.

Least outstanding with power-of-two choices, round robin, smooth weighted round robin, a canary split
between endpoint groups; ejected endpoints, excluded ones and full ones (`max_inflight_per_endpoint`)
are never picked.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from gateway.config.schema import EndpointConfig, OutlierConfig, PoolConfig
from gateway.errors import GatewayError
from gateway.upstream.config import NAME, PoolOptions
from gateway.upstream.pool import Endpoint, Pool
from gateway.upstream.rollout import RolloutConfig
from tests.upstream.conftest import seeded_random


def _pool(balancer: str, *endpoints: tuple[str, int, str], **overrides: Any) -> Pool:
    eps = tuple(EndpointConfig(url=f"http://{name}:8000", weight=weight, group=group)
                for name, weight, group in endpoints)
    return Pool(PoolConfig(name=f"p-{balancer}", endpoints=eps, models=("m",), balancer=balancer, **overrides))


def _named(*names: str, weight: int = 1) -> list[tuple[str, int, str]]:
    return [(name, weight, "default") for name in names]


def _host(endpoint: Endpoint) -> str:
    return endpoint.host.split(":")[0]


def _picks(pool: Pool, n: int, exclude: set[Endpoint] | None = None) -> list[str]:
    return [_host(pool.pick(exclude)) for _ in range(n)]


_seeded = seeded_random(1234)  # the balancers draw from `random`: repeatable distributions


def _by_host(pool: Pool) -> dict[str, Endpoint]:
    return {_host(e): e for e in pool.endpoints}


# --- round robin ------------------------------------------------------------------------------


def test_round_robin_cycles_through_every_endpoint_in_turn() -> None:
    pool = _pool("round_robin", *_named("a", "b", "c"))
    picks = _picks(pool, 300)
    assert Counter(picks) == {"a": 100, "b": 100, "c": 100}
    assert all(picks[i] != picks[i + 1] for i in range(len(picks) - 1))
    assert picks[:3] == picks[3:6]  # one fixed order, repeated


def test_round_robin_skips_an_ejected_endpoint_and_takes_it_back_when_readmitted() -> None:
    pool = _pool("round_robin", *_named("a", "b", "c"))
    ep = _by_host(pool)
    pool.eject(ep["b"])
    assert Counter(_picks(pool, 100)) == {"a": 50, "c": 50}
    pool.readmit(ep["b"])
    assert Counter(_picks(pool, 99)) == {"a": 33, "b": 33, "c": 33}


def test_enough_consecutive_failures_eject_an_endpoint() -> None:
    pool = _pool("round_robin", *_named("a", "b"), outlier=OutlierConfig(consecutive_failures=2))
    ep = _by_host(pool)
    pool.on_failure(ep["a"])
    assert not ep["a"].ejected and "a" in _picks(pool, 2)
    pool.on_success(ep["a"], 0.01)  # a success resets the count
    pool.on_failure(ep["a"])
    assert not ep["a"].ejected
    pool.on_failure(ep["a"])
    assert ep["a"].ejected and set(_picks(pool, 10)) == {"b"}


# --- smooth weighted round robin --------------------------------------------------------------


def test_weighted_gives_exact_shares_evenly_interleaved() -> None:
    pool = _pool("weighted", ("a", 5, "default"), ("b", 1, "default"), ("c", 1, "default"))
    # nginx's smooth weighted round robin: the heavy endpoint is spread out, never five in a row
    assert "".join(_picks(pool, 7)) == "aabacaa"
    assert Counter(_picks(pool, 700)) == {"a": 500, "b": 100, "c": 100}


def test_weighted_shares_are_among_the_endpoints_left_when_one_is_ejected() -> None:
    pool = _pool("weighted", ("a", 3, "default"), ("b", 1, "default"), ("c", 4, "default"))
    pool.eject(_by_host(pool)["c"])
    assert Counter(_picks(pool, 400)) == {"a": 300, "b": 100}


# --- least outstanding, power of two choices ---------------------------------------------------


def test_least_outstanding_between_two_takes_the_one_with_fewer_requests_in_flight() -> None:
    pool = _pool("least_outstanding", *_named("a", "b"))
    ep = _by_host(pool)
    ep["a"].in_flight, ep["b"].in_flight = 3, 1
    assert set(_picks(pool, 50)) == {"b"}
    ep["a"].in_flight = 0
    assert set(_picks(pool, 50)) == {"a"}


def test_least_outstanding_breaks_a_tie_by_lower_latency() -> None:
    pool = _pool("least_outstanding", *_named("a", "b"))
    ep = _by_host(pool)
    pool.on_success(ep["a"], 0.200)
    pool.on_success(ep["b"], 0.050)
    assert set(_picks(pool, 50)) == {"b"}


def test_power_of_two_choices_never_picks_the_busiest_and_favours_the_idlest() -> None:
    pool = _pool("least_outstanding", *_named("a", "b", "c"))
    ep = _by_host(pool)
    ep["a"].in_flight, ep["b"].in_flight, ep["c"].in_flight = 0, 4, 9
    counts = Counter(_picks(pool, 3000))
    assert counts["c"] == 0  # the busiest loses every pair it is drawn into
    # a wins every pair it is in (2 of the 3 pairs), b wins only the pair {b, c}
    assert 1800 < counts["a"] < 2200 and 800 < counts["b"] < 1200


# --- room, exclusion and errors (every balancer) -----------------------------------------------


@pytest.mark.parametrize("balancer", ["least_outstanding", "round_robin", "weighted"])
def test_a_full_endpoint_is_skipped_and_a_full_pool_is_a_fast_503(balancer: str) -> None:
    pool = _pool(balancer, *_named("a", "b", "c"), max_inflight_per_endpoint=2)
    ep = _by_host(pool)
    ep["a"].in_flight = 2
    assert set(_picks(pool, 60)) == {"b", "c"}
    ep["b"].in_flight = ep["c"].in_flight = 2
    with pytest.raises(GatewayError) as err:
        pool.pick()
    assert err.value.status == 503 and err.value.code == "pool_saturated"
    ep["c"].in_flight = 1
    assert set(_picks(pool, 10)) == {"c"}


@pytest.mark.parametrize("balancer", ["least_outstanding", "round_robin", "weighted"])
def test_excluded_endpoints_are_not_retried_and_none_left_is_no_healthy_upstream(balancer: str) -> None:
    pool = _pool(balancer, *_named("a", "b", "c"))
    ep = _by_host(pool)
    assert set(_picks(pool, 30, exclude={ep["a"], ep["c"]})) == {"b"}
    pool.eject(ep["b"])
    with pytest.raises(GatewayError) as err:
        pool.pick({ep["a"], ep["c"]})
    assert err.value.status == 503 and err.value.code == "no_healthy_upstream"


def test_a_draining_or_unhealthy_endpoint_takes_no_new_requests() -> None:
    pool = _pool("round_robin", *_named("a", "b", "c"))
    ep = _by_host(pool)
    ep["a"].draining = True
    ep["c"].healthy = False
    assert set(_picks(pool, 20)) == {"b"}
    ep["b"].healthy = False
    with pytest.raises(GatewayError) as err:
        pool.pick()
    assert err.value.code == "no_healthy_upstream"


# --- canary split between endpoint groups ------------------------------------------------------


def _canary_pool(balancer: str = "round_robin") -> Pool:
    return _pool(balancer, ("s1", 1, "stable"), ("s2", 1, "stable"), ("c1", 1, "canary"),
                 sections={NAME: PoolOptions(rollout=RolloutConfig(steps=(20.0, 100.0), min_requests=10**9))})


def test_a_running_canary_gets_its_step_share_of_picks() -> None:
    pool = _canary_pool()
    counts = Counter(_picks(pool, 5000))
    # 20% of 5000 is 1000; the binomial standard deviation is about 28
    assert 880 < counts["c1"] < 1120
    assert abs(counts["s1"] - counts["s2"]) < 200  # the stable share is still balanced


def test_a_canary_with_no_usable_endpoint_sends_everything_to_stable() -> None:
    pool = _canary_pool()
    pool.eject(_by_host(pool)["c1"])
    assert set(_picks(pool, 200)) == {"s1", "s2"}


def test_a_promoted_canary_takes_all_picks() -> None:
    pool = _canary_pool("weighted")
    assert pool.rollout is not None
    pool.rollout.promote()
    assert set(_picks(pool, 50)) == {"c1"}


def test_a_rolled_back_canary_takes_no_picks() -> None:
    pool = _canary_pool("weighted")
    assert pool.rollout is not None
    pool.rollout.rollback()
    assert set(_picks(pool, 50)) == {"s1", "s2"}
