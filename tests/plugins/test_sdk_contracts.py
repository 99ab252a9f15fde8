"""The official SDKs' contracts with their host, each reproduced by a plugin of our own
(`tests/plugins/wasm/`) that checks exactly what that SDK checks, driven through a real gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import gateway_config, start_fake_backend, start_gateway
from tests.plugins.conftest import plugin_entry


def _route(name: str, model: str, plugin: str, phase: str = "auth", **extra: Any) -> dict[str, Any]:
    return {"name": name, "paths": ["/v1/completions"], "models": [model], "pool": "default", "auth": "none",
            "plugins": [{"name": plugin, "phase": phase}], **extra}


@pytest.fixture(scope="module")
def env(own_plugins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    backend, authz = start_fake_backend(name="sdk"), start_fake_backend(name="authz")
    cfg = gateway_config([backend])
    cfg["pools"][0]["models"] = ["fake-model", "m-*"]
    cfg["plugins"] = [plugin_entry("go", own_plugins["go_contract"], upstreams={"authz": authz.url})]
    cfg["routes"] = [_route("go", "m-go", "go"), *cfg["routes"]]
    gw = start_gateway(tmp_path_factory.mktemp("contracts"), cfg)
    yield gw, backend, authz
    gw.proc.stop()
    backend.proc.stop()
    authz.proc.stop()


def _post(gw: Any, model: str, headers: dict[str, str] | None = None, path: str = "/v1/completions") -> httpx.Response:
    return httpx.post(gw.url + path, json={"model": model, "prompt": "hi", "max_tokens": 2}, headers=headers or {},
                      timeout=10)


def test_go_sdk_http_call_answer_reaches_the_root_context(env: Any) -> None:
    """Go SDK: proxy_on_http_call_response's first argument is the plugin (root) context; any other
    id panics ("http_call_response on invalid plugin context")."""
    gw, backend, authz = env
    for _ in range(3):
        resp = _post(gw, "m-go")
        assert resp.status_code == 200, resp.text
        assert backend.stats()["last_headers"]["x-go-contract"] == "ok"
    authz.control(health=503)
    try:
        resp = _post(gw, "m-go")
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "authz_denied"
    finally:
        authz.control(health=200)
    assert gw.metric("edgegw_plugin_failures_total", plugin="go") == 0
    assert "invalid plugin context" not in gw.proc.log()


def test_go_panic_is_one_log_record(env: Any) -> None:
    """Go's runtime prints a panic piecewise, then usleeps through WASI poll_oneoff: the message is
    one log line, and no "panic during panic" (poll_oneoff answers)."""
    gw, _, _ = env
    resp = _post(gw, "m-go", {"x-panic": "1"})
    assert resp.status_code == 500 and resp.json()["error"]["message"] == "plugin 'go' failed (exit)"
    log = gw.proc.log()
    lines = [line for line in log.splitlines() if "edgegw.plugin.go" in line]
    assert any(line.endswith("ERROR edgegw.plugin.go: panic: deliberate panic in OnHttpRequestHeaders")
               for line in lines), "\n".join(lines)
    assert any(line.endswith("edgegw.plugin.go: goroutine 1 [running]:") for line in lines)
    assert "panic during panic" not in log
    assert _post(gw, "m-go").status_code == 200  # a fresh instance serves the next request
