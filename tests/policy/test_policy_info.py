"""`edgegw_policy_info` keeps one series per live worker however many reloads there were (it used to
add one per reload per worker, with `loaded_at` as a label, and never drop any)."""

from __future__ import annotations

from pathlib import Path

import httpx
import yaml

from gateway.policy.version import policy_hash
from testkit.policy_load import wait_until, worker_versions
from tests.conftest import gateway_config, start_fake_backend, start_gateway


def series(url: str) -> list[str]:
    return [line for line in httpx.get(url + "/metrics", timeout=5).text.splitlines()
            if line.startswith("edgegw_policy_info{")]


def test_one_series_per_worker_after_many_reloads(tmp_path: Path) -> None:
    backend = start_fake_backend()
    gw = start_gateway(tmp_path, gateway_config([backend]), workers=2)
    admin = {"authorization": f"Bearer {gw.token('ops', scopes=['admin'])}"}
    try:
        wait_until(lambda: len(worker_versions(gw.url)) == 2, 30)
        text = ""
        for i in range(25):
            text = f"# reload {i}\n" + yaml.safe_dump(gw.config)
            resp = httpx.put(gw.url + "/admin/policy", content=text, headers=admin, timeout=10)
            assert resp.status_code == 200, resp.text
        version = policy_hash(text)
        wait_until(lambda: set(worker_versions(gw.url).values()) == {version}
                   and len(worker_versions(gw.url)) == 2, 15)
        lines = series(gw.url)
        assert len(lines) == 2, lines
        assert all(f'version="{version}"' in line and line.endswith(" 1.0") for line in lines), lines
    finally:
        gw.proc.stop()
        backend.proc.stop()


def test_one_series_in_a_single_worker(tmp_path: Path) -> None:
    backend = start_fake_backend()
    gw = start_gateway(tmp_path, gateway_config([backend]))
    admin = {"authorization": f"Bearer {gw.token('ops', scopes=['admin'])}"}
    try:
        for i in range(5):
            text = f"# reload {i}\n" + yaml.safe_dump(gw.config)
            assert httpx.put(gw.url + "/admin/policy", content=text, headers=admin, timeout=10).status_code == 200
        lines = series(gw.url)
        assert len(lines) == 1 and f'version="{policy_hash(text)}"' in lines[0], lines
    finally:
        gw.proc.stop()
        backend.proc.stop()
