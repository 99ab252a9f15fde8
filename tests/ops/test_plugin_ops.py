"""docs/operations.md's plugin commands: `edgegw plugin push` with a configuration, a `plugin_dir` made at
start, and `/admin/plugins` saying why when the policy configures no plugins."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.harness import EDGEGW, ROOT
from tests.conftest import gateway_config

AUTH_CONFIG = {"header": "x-api-key", "keys": ["demo-key-1|partner-1|acme|gold"]}


@pytest.fixture(scope="module")
def auth_wasm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from wasm_plugins.build import EXAMPLES, build_c

    out = tmp_path_factory.mktemp("plugins") / "auth.wasm"
    build_c(EXAMPLES / "c" / "auth.c", out)  # what `make plugins` builds into build/plugins/auth.wasm
    return out


def _admin(gw: Any) -> dict[str, str]:
    return {"authorization": f"Bearer {gw.token('ops', scopes=['admin'])}"}


def _push(gw: Any, wasm: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    token = gw.token("ops", scopes=["admin"])
    return subprocess.run([*EDGEGW, "plugin", "push", "partner-auth", str(wasm), "--gateway", gw.url,
                           "--token", token, *extra], capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_admin_plugins_says_why_when_no_plugins_are_configured(fake_backend: Any, make_gateway: Any) -> None:
    gw = make_gateway(gateway_config([fake_backend]))
    assert httpx.get(gw.url + "/admin/plugins").status_code == 401  # still an admin endpoint
    for method, path in (("GET", "/admin/plugins"), ("PUT", "/admin/plugins/x"), ("POST", "/admin/plugins/x/promote")):
        resp = httpx.request(method, gw.url + path, headers=_admin(gw), content=b"\0asm")
        error = resp.json()["error"]
        assert resp.status_code == 404 and error["code"] == "plugins_not_configured", resp.text
        assert "no `plugins:` list and no `plugin_dir`" in error["message"]


def test_push_with_a_config_file_into_a_plugin_dir_made_at_start(tmp_path: Path, auth_wasm: Path,
                                                                  fake_backend: Any, make_gateway: Any) -> None:
    plugin_dir = tmp_path / "not" / "yet" / "plugins.d"
    gw = make_gateway(gateway_config([fake_backend], plugin_dir=str(plugin_dir)))
    assert plugin_dir.is_dir()
    # The auth plugin refuses to start without keys: nothing was loaded, and the answer says so.
    bare = _push(gw, auth_wasm)
    assert bare.returncode == 1 and "nothing was loaded" in bare.stdout
    (config := tmp_path / "partner-auth.json").write_text(json.dumps(AUTH_CONFIG))
    first = _push(gw, auth_wasm, "--config-file", str(config))
    assert first.returncode == 0 and json.loads(first.stdout)["role"] == "stable", first.stdout + first.stderr
    (yaml_config := tmp_path / "partner-auth.yaml").write_text("header: x-api-key\nkeys: ['k|s|t|gold']\n")
    canary = _push(gw, auth_wasm, "--config-file", str(yaml_config), "--canary", "0.1")
    assert canary.returncode == 0 and json.loads(canary.stdout)["role"] == "canary", canary.stdout
    rejected = _push(gw, auth_wasm)
    assert rejected.returncode == 1 and "the previous version keeps serving" in rejected.stdout
    inline = _push(gw, auth_wasm, "--config", json.dumps(AUTH_CONFIG))
    assert inline.returncode == 0
    both = _push(gw, auth_wasm, "--config", "{}", "--config-file", str(config))
    assert both.returncode == 1 and "not both" in both.stderr
    assert (plugin_dir / "partner-auth.wasm").exists()  # published for other workers and restarts


def test_check_config_notes_a_missing_plugin_dir_and_refuses_a_file(tmp_path: Path) -> None:
    import yaml

    policy = tmp_path / "gw.yaml"
    data = {"issuers": [{"name": "t", "issuer": "https://t", "algorithms": ["HS256"],
                         "secret_env": "EDGEGW_TEST_SECRET"}],
            "pools": [{"name": "p", "models": ["m"], "endpoints": [{"url": "http://127.0.0.1:1"}]}],
            "routes": [{"name": "r", "paths": ["/v1/completions"]}], "plugin_dir": "plugins.d",
            "admin": {"issuer": "t"}}
    policy.write_text(yaml.safe_dump(data))
    noted = subprocess.run([*EDGEGW, "check-config", str(policy)], capture_output=True, text=True, cwd=ROOT)
    assert noted.returncode == 0 and "does not exist yet; `edgegw serve` creates it" in noted.stdout
    assert not (tmp_path / "plugins.d").exists()  # checking changes nothing
    (tmp_path / "plugins.d").write_text("a file")
    refused = subprocess.run([*EDGEGW, "check-config", str(policy)], capture_output=True, text=True, cwd=ROOT)
    assert refused.returncode == 2 and "plugin_dir" in refused.stderr and "not a directory" in refused.stderr
    served = subprocess.run([*EDGEGW, "serve", "--config", str(policy)], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert served.returncode == 2 and f"{policy}: plugin_dir" in served.stderr
