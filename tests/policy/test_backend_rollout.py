"""Backend rollouts: a canary group that fails 30% of requests is rolled back with its exposure bounded by
the first step's share; a healthy canary is promoted through every step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from testkit.policy_load import Load, wait_until, worker_versions
from tests.conftest import FakeBackendProc, gateway_config, start_fake_backend, start_gateway

STEPS = [10, 50, 100]


def rollout_policy(stable: FakeBackendProc, canary: FakeBackendProc, **rollout: Any) -> dict[str, Any]:
    config = gateway_config([])
    pool = config["pools"][0]
    pool["endpoints"] = [{"url": stable.url, "group": "stable"}, {"url": canary.url, "group": "canary"}]
    pool["outlier"] = {"consecutive_failures": 1000}  # judged by the rollout, not ejected
    pool["rollout"] = {"steps": STEPS, "interval_s": 0.5, "min_requests": 30, "max_error_rate_increase": 0.05,
                       "max_latency_ratio": 5, **rollout}
    return config


def rollout_state(gw: Any, admin: dict[str, str]) -> dict[str, Any]:
    [state] = httpx.get(gw.url + "/admin/rollouts", headers=admin, timeout=5).json()
    return state


def test_a_failing_canary_is_rolled_back_with_exposure_bounded_by_the_first_step(tmp_path: Path) -> None:
    stable = start_fake_backend(name="stable")
    canary = start_fake_backend(name="canary")
    canary.control(fault="p:0.3:500")
    gw = start_gateway(tmp_path, rollout_policy(stable, canary))
    admin = {"authorization": f"Bearer {gw.token('ops', scopes=['admin'])}"}
    try:
        with Load(gw.url, gw.token("load"), clients=4) as load:
            wait_until(lambda: rollout_state(gw, admin)["state"] == "rolled_back", 30)
            at_rollback = load.total
            canary_at_rollback = canary.stats()["requests"]
            wait_until(lambda: load.total > at_rollback + 200, 30)
        state = rollout_state(gw, admin)
        total = load.total
        seen_by_canary = canary.stats()["requests"]
        # Exposure: the first step's share of the traffic until the verdict, no more (30 judged + in flight).
        assert state["exposed"] <= 30 + 4, state
        assert seen_by_canary <= STEPS[0] / 100 * at_rollback * 1.6 + 4, (seen_by_canary, at_rollback)
        assert seen_by_canary - canary_at_rollback <= 4  # nothing after the rollback but what was in flight
        assert state["share"] == 0 and state["step"] == 1
        events = [e["event"] for e in state["events"]]
        assert events[0] == "rolled_back" and "error rate" in state["events"][0]["detail"]
        assert gw.metric("edgegw_rollout_events_total", pool="default", event="rolled_back") == 1
        assert gw.metric("edgegw_rollout_canary_share", pool="default") == 0
        assert "rollout of pool default: rolled back" in gw.proc.log()
        page = httpx.get(gw.url + "/admin/panel", headers=admin, timeout=5).text
        assert "Backend rollouts" in page and "rolled_back" in page
        # Failures clients saw: the canary's 30% of its bounded share.
        assert len(load.failures) <= seen_by_canary, (len(load.failures), total)
    finally:
        gw.proc.stop()
        stable.proc.stop()
        canary.proc.stop()


def test_a_healthy_canary_is_promoted_through_every_step(tmp_path: Path) -> None:
    stable = start_fake_backend(name="stable")
    canary = start_fake_backend(name="canary")
    gw = start_gateway(tmp_path, rollout_policy(stable, canary))
    admin = {"authorization": f"Bearer {gw.token('ops', scopes=['admin'])}"}
    try:
        with Load(gw.url, gw.token("load"), clients=4) as load:
            wait_until(lambda: rollout_state(gw, admin)["state"] == "promoted", 40)
            canary_before = canary.stats()["requests"]
            stable_before = stable.stats()["requests"]
            at_promotion = load.total
            wait_until(lambda: load.total > at_promotion + 100, 30)
        assert load.failures == []
        state = rollout_state(gw, admin)
        events = [e["event"] for e in reversed(state["events"])]
        assert events == ["started", "step_passed", "step_passed", "promoted"], state["events"]
        assert state["share"] == 1
        # After promotion the canary takes everything.
        assert canary.stats()["requests"] - canary_before >= 100
        assert stable.stats()["requests"] - stable_before <= 4
        assert gw.metric("edgegw_rollout_events_total", pool="default", event="promoted") == 1
    finally:
        gw.proc.stop()
        stable.proc.stop()
        canary.proc.stop()


def test_abort_by_hand(tmp_path: Path) -> None:
    stable = start_fake_backend(name="stable")
    canary = start_fake_backend(name="canary")
    gw = start_gateway(tmp_path, rollout_policy(stable, canary, interval_s=3600))
    admin = {"authorization": f"Bearer {gw.token('ops', scopes=['admin'])}"}
    try:
        user = {"authorization": f"Bearer {gw.token('user')}"}
        assert httpx.post(gw.url + "/admin/rollouts/default/abort", headers=user, timeout=5).status_code == 403
        assert httpx.post(gw.url + "/admin/rollouts/nope/abort", headers=admin, timeout=5).status_code == 404
        resp = httpx.post(gw.url + "/admin/rollouts/default/abort", headers=admin, timeout=5)
        assert resp.status_code == 200 and resp.json()["state"] == "rolled_back"
        assert "aborted by ops" in resp.json()["events"][0]["detail"]
    finally:
        gw.proc.stop()
        stable.proc.stop()
        canary.proc.stop()


def test_a_canary_slow_to_its_first_token_is_rolled_back(tmp_path: Path) -> None:
    stable = start_fake_backend(name="stable")
    canary = start_fake_backend(name="canary")
    canary.control(fault="slow:0.15")  # every answer starts 150 ms late
    gw = start_gateway(tmp_path, rollout_policy(stable, canary, max_latency_ratio=1000, max_ttft_ratio=1.5))
    admin = {"authorization": f"Bearer {gw.token('ops', scopes=['admin'])}"}
    streamed = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
                "stream": True}
    try:
        with Load(gw.url, gw.token("load"), clients=4, body=streamed) as load:
            wait_until(lambda: rollout_state(gw, admin)["state"] == "rolled_back", 40)
        state = rollout_state(gw, admin)
        assert "time to first token" in state["events"][0]["detail"], state["events"]
        assert load.failures == []
    finally:
        gw.proc.stop()
        stable.proc.stop()
        canary.proc.stop()


def test_a_verdict_in_one_worker_reaches_every_worker(tmp_path: Path) -> None:
    """An abort by hand goes to one worker's admin API; every worker follows it (the shared verdict file)."""
    stable = start_fake_backend(name="stable")
    canary = start_fake_backend(name="canary")
    gw = start_gateway(tmp_path, rollout_policy(stable, canary, interval_s=3600), workers=2)
    admin = {"authorization": f"Bearer {gw.token('ops', scopes=['admin'])}"}
    try:
        wait_until(lambda: len(worker_versions(gw.url)) == 2, 30)
        resp = httpx.post(gw.url + "/admin/rollouts/default/abort", headers=admin, timeout=5)
        assert resp.status_code == 200 and resp.json()["state"] == "rolled_back"

        def every_worker_rolled_back() -> bool:
            # A new connection each time, so both workers are asked.
            return all(rollout_state(gw, admin)["state"] == "rolled_back" for _ in range(8))

        wait_until(every_worker_rolled_back, 15)
        assert "aborted by ops" in rollout_state(gw, admin)["events"][0]["detail"]
        canary_before = canary.stats()["requests"]
        token = {"authorization": f"Bearer {gw.token('user')}"}
        for _ in range(20):
            chat = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
            assert httpx.post(gw.url + "/v1/chat/completions", json=chat, headers=token, timeout=5).status_code == 200
        assert canary.stats()["requests"] == canary_before  # no worker sends to the rolled-back group
    finally:
        gw.proc.stop()
        stable.proc.stop()
        canary.proc.stop()
