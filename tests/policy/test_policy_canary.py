"""Policy canary: a sticky share of callers runs the new policy; a 10x stricter rate limit (a 429 surge)
is rolled back with its exposure bounded by the first step's share; a sound one is promoted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.policy.version import policy_hash
from testkit.policy_load import CHAT, Load, wait_until, worker_versions
from tests.conftest import start_fake_backend, start_gateway
from tests.policy.conftest import Stable, cli, limited, subjects

# Requests per second per load client: well under the stable limit (100 per subject), so a stable
# caller's 429 can only come from a wrong policy; 4x the canary's 10x stricter limit.
PACE = 40


def canary_view(gw: Any, admin: dict[str, str]) -> dict[str, Any]:
    return httpx.get(gw.url + "/admin/policy/canary", headers=admin, timeout=5).json()


def test_a_canary_with_a_10x_stricter_limit_is_rolled_back(tmp_path: Path, two_workers: Stable) -> None:
    gw, admin_token = two_workers.gw, two_workers.admin_token
    stable_version = policy_hash(gw.config_path.read_text())
    admin = {"authorization": f"Bearer {admin_token}"}
    new = tmp_path / "new.yaml"
    new.write_text(yaml.safe_dump(limited(two_workers.backend, 10)))
    inside, outside = subjects(4, 12)
    canary_tokens = [gw.token(s) for s in inside]
    stable_tokens = [gw.token(s) for s in outside]
    with Load(gw.url, canary_tokens + stable_tokens, rate=PACE) as load:
        wait_until(lambda: load.total > 100, 20)
        before = load.total
        out = cli("rollout", str(new), "--gateway", gw.url, "--token", admin_token, "--steps", "25,50,100",
                  "--min-requests", "40", "--min-step-s", "1", "--wait")
        during = load.total - before
    assert out.returncode == 1, out.stdout + out.stderr  # rolled back
    assert "rolled_back" in out.stdout
    view = canary_view(gw, admin)
    assert view["current"] is None and view["stable"] == stable_version
    [last] = view["history"][:1]
    # Every worker answers the same (a new connection each time, so both workers are asked).
    for _ in range(8):
        again = canary_view(gw, admin)
        assert again["current"] is None and again["history"][:1] == [last], again
    assert last["state"] == "rolled_back" and last["step"] == 1
    verdict = next(e for e in last["events"] if e["event"] == "rolled_back")["detail"]
    assert "429 rate" in verdict or "rolled back" in verdict, last["events"]
    # Exposure: only the first step's callers, for about min_requests of theirs per worker.
    assert last["exposed"] <= 40 + 16, last
    limited_429 = load.statuses[429]
    assert 0 < limited_429 <= 2 * (40 + 16), load.statuses  # at most the canary's share, per worker
    assert load.statuses[200] + limited_429 == load.total, load.statuses
    assert during > 0
    # The stable callers never saw the canary's limit; its callers did.
    assert all(load.by_token[f"{t}:429"] == 0 for t in stable_tokens)
    assert sum(load.by_token[f"{t}:429"] for t in canary_tokens) == limited_429
    # Every worker is back on the stable version; the policy file did not change.
    assert set(worker_versions(gw.url).values()) == {stable_version}
    assert policy_hash(gw.config_path.read_text()) == stable_version
    status = cli("status", "--gateway", gw.url, "--token", admin_token)
    assert status.returncode == 0 and "rolled_back" in status.stdout and "429 rate" in status.stdout
    # A canary caller is served by the stable policy again.
    probe = {"authorization": f"Bearer {gw.token(inside[0])}"}
    wait_until(lambda: httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers=probe,
                                  timeout=5).status_code == 200, 3)


def test_a_sound_canary_is_promoted_to_every_worker(tmp_path: Path, two_workers: Stable) -> None:
    gw, admin_token = two_workers.gw, two_workers.admin_token
    text = yaml.safe_dump(limited(two_workers.backend, 200))
    new = tmp_path / "new.yaml"
    new.write_text(text)
    inside, outside = subjects(4, 12)
    with Load(gw.url, [gw.token(s) for s in inside + outside], rate=PACE) as load:
        wait_until(lambda: load.total > 100, 20)
        out = cli("rollout", str(new), "--gateway", gw.url, "--token", admin_token, "--steps", "25,100",
                  "--min-requests", "20", "--min-step-s", "0.5", "--max-overhead-ratio", "20",
                  "--max-latency-ratio", "20", "--wait")
        wait_until(lambda: set(worker_versions(gw.url).values()) == {policy_hash(text)}, 15)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "promoted" in out.stdout
    assert gw.config_path.read_text() == text
    assert load.failures == [], load.failures[:5]


def test_a_stable_change_during_a_canary_aborts_it(tmp_path: Path) -> None:
    backend = start_fake_backend()
    gw = start_gateway(tmp_path, limited(backend, 100))
    admin = {"authorization": f"Bearer {gw.token('ops', scopes=['admin'])}"}
    try:
        body = {"policy": yaml.safe_dump(limited(backend, 50)), "steps": [10, 100], "min_step_s": 3600}
        resp = httpx.post(gw.url + "/admin/policy/canary", json=body, headers=admin, timeout=10)
        assert resp.status_code == 200 and resp.json()["state"] == "running", resp.text
        # One canary at a time; bad settings and invalid policies are refused with a reason.
        again = httpx.post(gw.url + "/admin/policy/canary", json=body, headers=admin, timeout=10)
        assert again.status_code == 409 and "is running" in again.json()["error"]["message"]
        bad = httpx.post(gw.url + "/admin/policy/canary", json={**body, "steps": [50, 10]}, headers=admin,
                         timeout=10)
        assert bad.status_code == 400 and "increase" in bad.json()["error"]["message"]
        third = yaml.safe_dump(limited(backend, 70))
        assert httpx.put(gw.url + "/admin/policy", content=third, headers=admin, timeout=10).status_code == 200
        view = canary_view(gw, admin)
        assert view["current"] is None and view["history"][0]["state"] == "aborted"
        assert view["stable"] == policy_hash(third)
        canary_file = gw.config_path.with_name(f".{gw.config_path.name}.canary.json")
        assert '"state":"aborted"' in canary_file.read_text()
        page = httpx.get(gw.url + "/admin/panel", headers=admin, timeout=5).text
        assert "aborted" in page and "the stable policy changed" in page
    finally:
        gw.proc.stop()
        backend.proc.stop()
