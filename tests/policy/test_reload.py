"""Policy hot reload under load, with two workers: a changed limit, an added route and new pool
endpoints take effect on every worker within 2 s, with no failed request."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.policy.version import policy_hash
from testkit.policy_load import CHAT, Load, start_gateway_file, wait_until, worker_versions, write_policy
from tests.conftest import FakeBackendProc, gateway_config, start_fake_backend, start_gateway

EMBED = {"model": "fake-model", "input": "hello"}


def policy(backend: FakeBackendProc, *, limit: int, added_route: bool) -> dict[str, Any]:
    config = gateway_config([backend])
    config["routes"] = [
        {"name": "inference", "paths": ["/v1/chat/completions"]},
        {"name": "limited", "paths": ["/v1/embeddings"],
         "rate_limits": [{"name": "per-caller", "key": "subject", "requests_per_minute": limit}]},
    ]
    if added_route:
        config["routes"].append({"name": "added", "paths": ["/v1/completions"]})
    return config


def fresh(url: str, path: str, body: dict[str, Any], token: str) -> httpx.Response:
    """One request on a new connection (so successive calls reach either worker)."""
    return httpx.post(url + path, json=body, headers={"authorization": f"Bearer {token}"}, timeout=10)


def test_reload_under_load_reaches_every_worker_with_no_failed_request(tmp_path: Path) -> None:
    a = start_fake_backend(name="a")
    b = start_fake_backend(name="b")
    gw = start_gateway(tmp_path, policy(a, limit=2, added_route=False), workers=2)
    try:
        probe = gw.token("probe")
        wait_until(lambda: len(worker_versions(gw.url)) == 2, 30)
        statuses = [fresh(gw.url, "/v1/embeddings", EMBED, probe).status_code for _ in range(6)]
        assert 429 in statuses, statuses  # 2 a minute per worker
        assert fresh(gw.url, "/v1/completions", {"model": "fake-model", "prompt": "x"}, probe).status_code == 404
        with Load(gw.url, gw.token("load")) as load:
            wait_until(lambda: load.total > 50, 20)
            new_text = write_policy(gw.config_path, policy(b, limit=1000, added_route=True))
            new = policy_hash(new_text)
            took = wait_until(lambda: set(worker_versions(gw.url).values()) == {new}
                              and len(worker_versions(gw.url)) == 2, 2.0)
            for _ in range(10):  # fresh connections: both workers answer with the new behaviour
                assert fresh(gw.url, "/v1/embeddings", EMBED, probe).status_code == 200
                assert fresh(gw.url, "/v1/completions", {"model": "fake-model", "prompt": "x"},
                             probe).status_code == 200
                assert fresh(gw.url, "/v1/chat/completions", CHAT, probe).json()["system_fingerprint"] == "b"
            before = load.total
            wait_until(lambda: load.total > before + 50, 20)
        assert load.failures == [], load.failures[:5]
        assert load.backends["a"] > 0 and load.backends["b"] > 0, load.backends
        print(f"converged in {took:.2f} s; {load.total} requests, all 200")
        assert "applied" in gw.proc.log()
        # The admin API reports the same version, and the text.
        admin = {"authorization": f"Bearer {gw.token('ops', scopes=['admin'])}"}
        got = httpx.get(gw.url + "/admin/policy", headers=admin, timeout=5)
        assert got.status_code == 200 and got.text == new_text
        assert got.headers["x-edgegw-policy-version"] == new
        status = httpx.get(gw.url + "/admin/status.json", headers=admin, timeout=5).json()
        assert status["policy"]["version"] == new and status["policy"]["origin"] == "file"
    finally:
        gw.proc.stop()
        a.proc.stop()
        b.proc.stop()


def test_kubernetes_configmap_symlink_swap_is_picked_up(tmp_path: Path) -> None:
    """A ConfigMap volume: gateway.yaml -> ..data/gateway.yaml, ..data -> ..<timestamp> swapped by rename."""
    a = start_fake_backend(name="a")
    b = start_fake_backend(name="b")
    mount = tmp_path / "mount"
    mount.mkdir()
    try:
        first = mount / "..2026_01"
        first.mkdir()
        (first / "gateway.yaml").write_text(yaml.safe_dump(policy(a, limit=5, added_route=False)))
        (mount / "..data").symlink_to(first.name)
        (mount / "gateway.yaml").symlink_to("..data/gateway.yaml")
        gw = start_gateway_file(mount / "gateway.yaml")
        try:
            token = gw.token("probe")
            assert fresh(gw.url, "/v1/chat/completions", CHAT, token).json()["system_fingerprint"] == "a"
            second = mount / "..2026_02"
            second.mkdir()
            (second / "gateway.yaml").write_text(yaml.safe_dump(policy(b, limit=5, added_route=False)))
            (mount / "..data_tmp").symlink_to(second.name)
            (mount / "..data_tmp").replace(mount / "..data")  # the kubelet's atomic swap
            wait_until(lambda: fresh(gw.url, "/v1/chat/completions", CHAT, token)
                       .json()["system_fingerprint"] == "b", 2.0)
        finally:
            gw.proc.stop()
    finally:
        a.proc.stop()
        b.proc.stop()
