"""A plugin written against a real proxy-wasm SDK (AssemblyScript, @gcoredev/proxy-wasm-sdk-as with
the WASI shim; `wasm_plugins/examples/as/`), built from source by `wasm_plugins.build` and run
unchanged through a real gateway process."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.harness import EDGEGW
from tests.conftest import gateway_config, start_fake_backend, start_gateway
from tests.plugins.conftest import plugin_entry

POLICY = {"header": "x-client-id", "allow": ["team-a|acme", "team-b"], "label": "partners"}
# merged over POLICY on the strict route: a second root context with its own configuration
STRICT = {"allow": ["team-c"], "label": "strict", "forward_as": "x-strict-client"}
# the SDK's http call: GET /healthz on the `authz` upstream decides
AUTHZ = {"label": "checked", "authz": "authz", "authz_path": "/healthz"}


def _route(name: str, model: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "paths": ["/v1/completions"], "models": [model], "pool": "default",
            "plugins": [{"name": "client_policy", "phase": "auth", **extra}]}


@pytest.fixture(scope="module")
def env(plugins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    backend, authz = start_fake_backend(name="sdk"), start_fake_backend(name="authz")
    cfg = gateway_config([backend])
    cfg["pools"][0]["models"] = ["fake-model", "m-*"]
    cfg["plugins"] = [plugin_entry("client_policy", plugins["client_policy"], config=POLICY,
                                   upstreams={"authz": authz.url})]
    cfg["routes"] = [
        {**_route("as-partners", "m-partners"), "auth": "plugin"},  # the plugin's subject is the identity
        {**_route("as-strict", "m-strict", config=STRICT), "auth": "none"},
        {**_route("as-authz", "m-authz", config=AUTHZ), "auth": "none"},
        *cfg["routes"],
    ]
    gw = start_gateway(tmp_path_factory.mktemp("sdk"), cfg)
    yield gw, backend, authz
    gw.proc.stop()
    backend.proc.stop()
    authz.proc.stop()


def _post(gw: Any, model: str, client: str | None = None) -> httpx.Response:
    headers = {"x-client-id": client} if client is not None else {}
    return httpx.post(gw.url + "/v1/completions", json={"model": model, "prompt": "hi", "max_tokens": 2},
                      headers=headers, timeout=10)


def _check(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGEGW, "plugin", "check", str(path), *extra], capture_output=True, text=True,
                          timeout=120)


def test_check_reports_abi_and_resolves_every_import(plugins: dict[str, Path]) -> None:
    proc = _check(plugins["client_policy"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "abi:      0.2.1" in proc.stdout
    imports = [line.split() for line in proc.stdout.splitlines() if line.startswith("  ") and "." in line]
    assert imports and all(status == "implemented" for _, status in imports), proc.stdout
    names = {name for name, _ in imports}
    # what this SDK build needs beyond the C examples: WASI output (its log), the SDK's exit path
    assert {"wasi_snapshot_preview1.fd_write", "wasi_snapshot_preview1.proc_exit",
            "env.proxy_get_buffer_bytes", "env.proxy_send_local_response"} <= names
    assert "malloc  (callback)" in proc.stdout and "_start  (callback)" in proc.stdout


def test_check_runs_the_sdk_configure(plugins: dict[str, Path]) -> None:
    ok = _check(plugins["client_policy"], "--config", json.dumps(POLICY))
    assert ok.returncode == 0 and ok.stdout.rstrip().endswith("ok"), ok.stdout + ok.stderr
    bad = _check(plugins["client_policy"], "--config", "[1, 2]")  # the plugin's onConfigure says no
    assert bad.returncode == 1 and "configuration rejected" in bad.stdout, bad.stdout + bad.stderr
    # why, in the plugin's words: the SDK logs "[ERROR]: ..." through WASI stdout, kept at error level
    assert "[ERROR]: client_policy: configuration must be a JSON object" in bad.stderr


def test_allowed_client_passes_with_added_headers(env: Any) -> None:
    gw, backend, _ = env
    resp = _post(gw, "m-partners", "team-a")
    assert resp.status_code == 200, resp.text
    seen = backend.stats()["last_headers"]
    assert seen["x-edgegw-client"] == "team-a" and seen["x-edgegw-policy"] == "partners"
    assert _post(gw, "m-partners", "team-b").status_code == 200
    assert backend.stats()["last_headers"]["x-edgegw-client"] == "team-b"


def test_rejected_clients_get_the_plugins_local_response(env: Any) -> None:
    gw, backend, _ = env
    before = backend.stats()["requests"]
    denied_before = gw.metric("edgegw_plugin_counter_client_policy_denied_total", plugin="client_policy")
    resp = _post(gw, "m-partners", "team-x")
    assert resp.status_code == 403, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    assert resp.headers["x-edgegw-plugin"] == "client_policy"
    assert resp.headers["x-client-policy"] == "partners"  # headers serialized by the SDK
    err = resp.json()["error"]
    assert err["code"] == "client_denied" and err["message"] == "client 'team-x' is not allowed by policy 'partners'"
    missing = _post(gw, "m-partners")
    assert missing.status_code == 403 and missing.json()["error"]["code"] == "missing_client_id"
    assert backend.stats()["requests"] == before  # nothing reached the backend
    # the SDK's Counter (proxy_define_metric / proxy_increment_metric)
    after = gw.metric("edgegw_plugin_counter_client_policy_denied_total", plugin="client_policy")
    assert after - denied_before == 2
    assert gw.metric("edgegw_plugin_failures_total", plugin="client_policy") == 0


def test_route_configuration_is_honoured_per_root_context(env: Any) -> None:
    gw, backend, _ = env
    resp = _post(gw, "m-strict", "team-a")
    assert resp.status_code == 403 and "policy 'strict'" in resp.json()["error"]["message"]
    assert _post(gw, "m-strict", "team-c").status_code == 200
    seen = backend.stats()["last_headers"]
    assert seen["x-strict-client"] == "team-c" and seen["x-edgegw-policy"] == "strict"
    # the strict root context did not replace the plugin-level one in the same instance
    assert _post(gw, "m-partners", "team-c").status_code == 403
    assert _post(gw, "m-partners", "team-a").status_code == 200
    assert backend.stats()["last_headers"]["x-edgegw-policy"] == "partners"


def test_http_call_through_the_sdk(env: Any) -> None:
    gw, backend, authz = env
    resp = _post(gw, "m-authz", "team-b")
    assert resp.status_code == 200, resp.text
    seen = backend.stats()["last_headers"]
    assert seen["x-edgegw-client"] == "team-b" and seen["x-edgegw-policy"] == "checked"
    authz.control(health=503)
    try:
        resp = _post(gw, "m-authz", "team-b")
        assert resp.status_code == 403, resp.text
        assert resp.json()["error"] == {"code": "authz_denied",
                                        "message": "the authorization service of policy 'checked' answered 503"}
    finally:
        authz.control(health=200)
    assert _post(gw, "m-authz", "team-x").status_code == 403  # the allow-list still applies first
    assert gw.metric("edgegw_plugin_failures_total", plugin="client_policy") == 0


def test_sdk_plugin_keeps_serving(env: Any) -> None:
    gw, backend, _ = env
    codes = [_post(gw, "m-partners", c).status_code for c in ("team-a", "team-x", "team-b") * 20]
    assert codes == [200, 403, 200] * 20
    assert gw.metric("edgegw_plugin_failures_total", plugin="client_policy") == 0
    assert gw.metric("edgegw_plugin_instances_started_total", plugin="client_policy") >= 1
