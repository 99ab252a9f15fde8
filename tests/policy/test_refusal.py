"""An invalid policy (bad YAML, unknown key, missing secret) by file, SIGHUP and the admin API is
refused with check-config's message; the running version keeps serving; nothing fails meanwhile."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.policy.version import policy_hash
from testkit.harness import EDGEGW, ROOT
from testkit.policy_load import Load, wait_until, worker_versions
from tests.conftest import gateway_config, start_fake_backend, start_gateway


def check_config_message(text: str, name: str, tmp_path: Path) -> str:
    """What `edgegw check-config` says about `text`, with the file name replaced by `name`."""
    path = tmp_path / "candidate.yaml"
    path.write_text(text)
    out = subprocess.run([*EDGEGW, "check-config", str(path)], capture_output=True, text=True, cwd=ROOT,
                         timeout=60)
    assert out.returncode == 2, out
    line = out.stderr.splitlines()[0]
    assert line.startswith("edgegw: invalid configuration: ")
    return line.removeprefix("edgegw: ").replace(str(path), name)


def refused(gw: Any, admin: dict[str, str]) -> dict[str, Any] | None:
    return httpx.get(gw.url + "/admin/policy/version", headers=admin, timeout=5).json()["refused"]


def test_invalid_policies_are_refused_and_the_running_version_keeps_serving(tmp_path: Path) -> None:
    backend = start_fake_backend()
    gw = start_gateway(tmp_path, gateway_config([backend]), workers=2)
    path = gw.config_path
    good = path.read_text()
    version = policy_hash(good)
    admin = {"authorization": f"Bearer {gw.token('ops', scopes=['admin'])}"}
    bad_yaml = good + "\nroutes: [unclosed\n"
    unknown_key = yaml.safe_dump({**gw.config, "routez": []})
    missing_secret = yaml.safe_dump({**gw.config, "issuers": [{**gw.config["issuers"][0],
                                                                "secret_env": "EDGEGW_NO_SUCH_SECRET"}]})
    try:
        wait_until(lambda: len(worker_versions(gw.url)) == 2, 30)
        with Load(gw.url, gw.token("load"), clients=4) as load:
            # 1. By file: each refused by both workers, with check-config's words.
            for text in (bad_yaml, unknown_key):
                expected = check_config_message(text, str(path), tmp_path)
                path.write_text(text)
                wait_until(lambda exp=expected: (refused(gw, admin) or {}).get("message") == exp, 15)
                assert set(worker_versions(gw.url).values()) == {version}
            # 2. SIGHUP (to the supervisor, passed on to the workers): refused again.
            path.write_text(missing_secret)
            expected = check_config_message(missing_secret, str(path), tmp_path)
            assert "EDGEGW_NO_SUCH_SECRET" in expected
            before = gw.metric("edgegw_policy_reloads_total", origin="sighup", result="refused")
            gw.proc.popen.send_signal(signal.SIGHUP)
            wait_until(lambda: gw.metric("edgegw_policy_reloads_total", origin="sighup",
                                         result="refused") >= before + 2, 3)
            assert gw.proc.alive()
            assert set(worker_versions(gw.url).values()) == {version}
            # 3. The admin API: 400 with the same message; the file keeps what was there.
            for text in (bad_yaml, unknown_key, missing_secret):
                resp = httpx.put(gw.url + "/admin/policy", content=text, headers=admin, timeout=10)
                assert resp.status_code == 400, resp.text
                error = resp.json()["error"]
                assert error["code"] == "policy_refused"
                assert error["message"] == "policy refused: " + check_config_message(text, str(path), tmp_path)
            assert path.read_text() == missing_secret
            # Visible: metric, status page and log.
            assert gw.metric("edgegw_policy_reloads_total", result="refused") >= 7
            status = httpx.get(gw.url + "/admin/status.json", headers=admin, timeout=5).json()
            assert status["policy"]["version"] == version and status["policy"]["refused"]
            page = httpx.get(gw.url + "/admin/panel", headers=admin, timeout=5).text
            assert "refused" in page and version in page
            assert "policy " in gw.proc.log() and "refused" in gw.proc.log()
            # The good text again: accepted (nothing to do: it is the running version).
            path.write_text(good)
            before = load.total
            wait_until(lambda: load.total > before + 20, 10)
        assert load.failures == [], load.failures[:5]
        assert set(worker_versions(gw.url).values()) == {version}
    finally:
        gw.proc.stop()
        backend.proc.stop()


def test_admin_put_reaches_every_worker_and_rollback_restores_the_previous_version(tmp_path: Path) -> None:
    backend = start_fake_backend()
    gw = start_gateway(tmp_path, gateway_config([backend]), workers=2)
    first = gw.config_path.read_text()
    admin = {"authorization": f"Bearer {gw.token('ops', scopes=['admin'])}"}
    try:
        wait_until(lambda: len(worker_versions(gw.url)) == 2, 30)
        # Only an admin may change the policy.
        assert httpx.put(gw.url + "/admin/policy", content=first, timeout=5).status_code == 401
        user = {"authorization": f"Bearer {gw.token('user')}"}
        assert httpx.put(gw.url + "/admin/policy", content=first, headers=user, timeout=5).status_code == 403
        second = yaml.safe_dump({**gw.config, "routes": [{"name": "only-chat", "paths": ["/v1/chat/completions"]}]})
        resp = httpx.put(gw.url + "/admin/policy", content=second, headers=admin, timeout=10)
        assert resp.status_code == 200, resp.text
        assert resp.json()["applied"]["version"] == policy_hash(second)
        assert gw.config_path.read_text() == second
        wait_until(lambda: set(worker_versions(gw.url).values()) == {policy_hash(second)}
                   and len(worker_versions(gw.url)) == 2, 2)
        resp = httpx.post(gw.url + "/admin/policy/rollback", headers=admin, timeout=10)
        assert resp.status_code == 200, resp.text
        assert resp.json()["applied"]["version"] == policy_hash(first)
        wait_until(lambda: set(worker_versions(gw.url).values()) == {policy_hash(first)}
                   and len(worker_versions(gw.url)) == 2, 2)
        assert gw.config_path.read_text() == first
    finally:
        gw.proc.stop()
        backend.proc.stop()
