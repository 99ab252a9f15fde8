"""`check-config --against RUNNING_URL` says which changes a reload applies live, at the next
connection, or only at restart; a reload applies the rest and reports what waits for a restart."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import yaml

from testkit.harness import EDGEGW, ROOT
from testkit.policy_load import wait_until, write_policy
from tests.conftest import gateway_config, start_fake_backend, start_gateway


def test_check_against_a_running_gateway(tmp_path: Path) -> None:
    backend = start_fake_backend()
    config = gateway_config([backend])
    gw = start_gateway(tmp_path, config)
    token = gw.token("ops", scopes=["admin"])
    try:
        def check(candidate: dict) -> subprocess.CompletedProcess[str]:
            path = tmp_path / "candidate.yaml"
            path.write_text(yaml.safe_dump(candidate))
            return subprocess.run([*EDGEGW, "check-config", str(path), "--against", gw.url, "--token", token],
                                  capture_output=True, text=True, cwd=ROOT, timeout=60)

        live = {**config, "routes": [*config["routes"], {"name": "extra", "paths": ["/v1/embeddings"]}]}
        out = check(live)
        assert out.returncode == 0, out.stdout + out.stderr
        assert "routes[extra]" in out.stdout and "live" in out.stdout and "a reload applies every change" in out.stdout
        mixed = {**live, "server": {**config["server"], "port": gw.port + 1, "header_timeout_s": 3}}
        out = check(mixed)
        assert out.returncode == 3, out.stdout + out.stderr
        lines = {line.split()[0]: line for line in out.stdout.splitlines() if line.startswith("  ")}
        assert "restart" in lines["server.port"]
        assert "next connection" in lines["server.header_timeout_s"]
        assert "live" in lines["routes[extra]"]
        # Unauthenticated: refused by the gateway.
        path = tmp_path / "candidate.yaml"
        out = subprocess.run([*EDGEGW, "check-config", str(path), "--against", gw.url, "--token", "nope"],
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert out.returncode == 2 and "401" in out.stderr
        # The reload itself applies the live parts and says what waits for a restart.
        write_policy(gw.config_path, mixed)
        admin = {"authorization": f"Bearer {token}"}
        wait_until(lambda: httpx.get(gw.url + "/admin/policy/version", headers=admin, timeout=5)
                   .json()["pending_restart"] == ["server.port"], 3)
        assert "wait for a restart: server.port" in gw.proc.log()
        assert httpx.post(gw.url + "/v1/embeddings", json={"model": "fake-model", "input": "x"},
                          headers={"authorization": f"Bearer {gw.token()}"}, timeout=5).status_code == 200
    finally:
        gw.proc.stop()
        backend.proc.stop()
