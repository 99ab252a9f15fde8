"""The official SDKs' contracts with their host, each reproduced by a plugin of our own
(`tests/plugins/wasm/`) that checks exactly what that SDK checks, driven through a real gateway."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.harness import EDGEGW
from tests.conftest import gateway_config, start_fake_backend, start_gateway
from tests.plugins.conftest import plugin_entry


def _route(name: str, model: str, plugin: str, phase: str = "auth", **extra: Any) -> dict[str, Any]:
    return {"name": name, "paths": ["/v1/completions"], "models": [model], "pool": "default", "auth": "none",
            "plugins": [{"name": plugin, "phase": phase}], **extra}


@pytest.fixture(scope="module")
def env(own_plugins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    backend, authz = start_fake_backend(name="sdk"), start_fake_backend(name="authz")
    victim = start_fake_backend(name="victim")  # a host no plugin may reach
    cfg = gateway_config([backend])
    cfg["pools"][0]["models"] = ["fake-model", "m-*"]
    cfg["plugins"] = [
        plugin_entry("go", own_plugins["go_contract"], upstreams={"authz": authz.url}),
        plugin_entry("cpp", own_plugins["cpp_contract"]),  # root_id: Envoy's default, ""
        plugin_entry("cpp_named", own_plugins["cpp_contract"], root_id="other", vm_id="vm-1"),
        plugin_entry("kong", own_plugins["kong_key"], config="key-one key-two"),
        plugin_entry("pseudo", own_plugins["pseudo_headers"]),
        plugin_entry("probe", own_plugins["call_probe"], upstreams={"up": authz.url},
                     limits={"deadline_ms": 100, "http_call_timeout_ms": 1500}),
        plugin_entry("ticker", own_plugins["ticker"]),  # limits.min_tick_ms: 100 by default
    ]
    cfg["routes"] = [
        _route("go", "m-go", "go"),
        _route("cpp", "m-cpp", "cpp", "routing"),
        _route("cpp-named", "m-cpp-named", "cpp_named", "routing"),
        _route("kong", "m-kong", "kong"),
        _route("pseudo", "m-pseudo", "pseudo", "preprocess"),
        _route("pseudo-late", "m-pseudo-late", "pseudo", "response"),
        _route("probe", "m-probe", "probe"),
        _route("ticker", "m-ticker", "ticker"),
        *cfg["routes"],
    ]
    gw = start_gateway(tmp_path_factory.mktemp("contracts"), cfg)
    yield gw, backend, authz, victim
    gw.proc.stop()
    for proc in (backend, authz, victim):
        proc.proc.stop()


def _post(gw: Any, model: str, headers: dict[str, str] | None = None, path: str = "/v1/completions") -> httpx.Response:
    return httpx.post(gw.url + path, json={"model": model, "prompt": "hi", "max_tokens": 2}, headers=headers or {},
                      timeout=10)


def test_go_sdk_http_call_answer_reaches_the_root_context(env: Any) -> None:
    """Go SDK: proxy_on_http_call_response's first argument is the plugin (root) context; any other
    id panics ("http_call_response on invalid plugin context")."""
    gw, backend, authz, _ = env
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
    gw, _, _, _ = env
    resp = _post(gw, "m-go", {"x-panic": "1"})
    assert resp.status_code == 500 and resp.json()["error"]["message"] == "plugin 'go' failed (exit)"
    log = gw.proc.log()
    lines = [line for line in log.splitlines() if "edgegw.plugin.go" in line]
    assert any(line.endswith("ERROR edgegw.plugin.go: panic: deliberate panic in OnHttpRequestHeaders")
               for line in lines), "\n".join(lines)
    assert any(line.endswith("edgegw.plugin.go: goroutine 1 [running]:") for line in lines)
    assert "panic during panic" not in log
    assert _post(gw, "m-go").status_code == 200  # a fresh instance serves the next request


def test_cpp_sdk_root_id_and_emscripten_imports(env: Any, own_plugins: dict[str, Path]) -> None:
    """C++ SDK: root contexts find their factory by `plugin_root_id`; its default registration is ""
    (Envoy's default root id). Emscripten builds import two `env` functions Envoy provides."""
    gw, backend, _, _ = env
    assert _post(gw, "m-cpp").status_code == 200
    seen = backend.stats()["last_headers"]
    assert seen["x-cpp-context"] == "registered" and seen["x-cpp-root-id"] == "[]"
    # a configured root id is delivered: this build registered none under "other", so the SDK's
    # default context runs and does nothing
    assert _post(gw, "m-cpp-named").status_code == 200
    assert "x-cpp-context" not in backend.stats()["last_headers"]
    proc = subprocess.run([*EDGEGW, "plugin", "check", str(own_plugins["cpp_contract"])], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("env.emscripten_notify_memory_growth", "env.pthread_equal"):
        assert re.search(rf"{re.escape(name)}\s+implemented", proc.stdout), proc.stdout
    assert gw.metric("edgegw_plugin_failures_total", plugin="cpp") == 0


def test_query_string_attributes(env: Any) -> None:
    """Kong's key-auth reads `?apikey=` from `request.query`; `request.path` has the query,
    `request.url_path` not (Envoy's attributes). Its hide_credentials rewrite of `:path` is forwarded."""
    gw, backend, _, _ = env
    resp = _post(gw, "m-kong", path="/v1/completions?apikey=key-one&trace=on")
    assert resp.status_code == 200, resp.text
    stats = backend.stats()
    seen = stats["last_headers"]
    assert seen["x-seen-path"] == "/v1/completions?apikey=key-one&trace=on"
    assert seen["x-seen-url-path"] == "/v1/completions"
    assert seen["x-seen-query"] == "apikey=key-one&trace=on"
    assert seen["x-consumer"] == "key-one"
    assert stats["last_query"] == "trace=on"  # the key was taken out of the forwarded path
    resp = _post(gw, "m-kong")  # no query: request.query is "" (not NOT_FOUND), so no key
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "missing_api_key", resp.text
    resp = _post(gw, "m-kong", path="/v1/completions?apikey=nope")
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "invalid_api_key"
    assert _post(gw, "m-kong", {"apikey": "key-two"}).status_code == 200


def test_authority_change_becomes_the_upstream_host(env: Any) -> None:
    """Go SDK http_routing: appending "-canary" to `:authority` routes by Host upstream."""
    gw, backend, _, _ = env
    assert _post(gw, "m-pseudo", {"host": "api.example"}).status_code == 200
    assert backend.stats()["last_host"] == backend.url.removeprefix("http://")  # unchanged: the endpoint's
    resp = _post(gw, "m-pseudo", {"host": "api.example", "x-authority-suffix": "-canary"})
    assert resp.status_code == 200, resp.text
    assert backend.stats()["last_host"] == "api.example-canary"


def test_path_change_is_forwarded(env: Any) -> None:
    gw, backend, _, _ = env
    before = backend.stats()["by_path"].get("/v2/completions", 0)
    assert _post(gw, "m-pseudo", {"x-set-path": "/v2/completions?variant=b"}).status_code == 200
    stats = backend.stats()
    assert stats["by_path"].get("/v2/completions", 0) == before + 1 and stats["last_query"] == "variant=b"
    # the same path with another query: the endpoint's upstream path, the new query
    assert _post(gw, "m-pseudo", {"x-set-path": "/v1/completions?variant=c"}).status_code == 200
    assert backend.stats()["last_query"] == "variant=c"


@pytest.mark.parametrize(("model", "headers", "why"), [
    ("m-pseudo", {"x-set-method": "GET"}, ":method to 'GET', which cannot apply"),
    ("m-pseudo", {"x-set-path": "@127.0.0.1:1/x"}, ":path to '@127.0.0.1:1/x', which cannot apply"),
    ("m-pseudo", {"x-authority-suffix": "@evil"}, ":authority to"),
    ("m-pseudo-late", {"x-set-path": "/v2/late"}, "the request was already forwarded"),
])
def test_pseudo_header_change_that_cannot_apply_fails_the_plugin(env: Any, model: str, headers: dict[str, str],
                                                                 why: str) -> None:
    gw, backend, _, _ = env
    resp = _post(gw, model, headers)
    assert resp.status_code == 500, resp.text
    assert resp.json()["error"]["message"] == "plugin 'pseudo' failed (pseudo_header)"
    assert why in gw.proc.log()


def _probe(gw: Any, **headers: str) -> httpx.Response:
    return _post(gw, "m-probe", {f"x-call-{k.replace('_', '-')}": v for k, v in headers.items()})


def test_http_call_reaches_only_its_upstream(env: Any) -> None:
    gw, _, authz, victim = env
    target = victim.url.removeprefix("http://")
    for path in (f"@{target}/x", f"http://{target}/x", f"{target}/x", "/x HTTP/1.1"):
        resp = _probe(gw, path=path)
        assert resp.status_code == 400 and resp.headers["x-call-result"] == "rejected", (path, resp.text)
    authz.control(reset=True)
    # :authority and host name the victim: the call still goes to the `up` upstream
    resp = _probe(gw, path="/x", authority=target, host=target)
    assert resp.status_code == 200 and resp.headers["x-call-status"] == "400", resp.text
    resp = _probe(gw, path=f"//{target}/x")  # a path that looks like a network path: still `up`
    assert resp.status_code == 200 and resp.headers["x-call-status"] == "400", resp.text
    stats = authz.stats()
    assert stats["by_path"] == {"/x": 1, f"//{target}/x": 1}, stats
    assert stats["last_host"] == authz.url.removeprefix("http://")
    assert victim.stats()["requests"] == 0


def test_http_call_sends_a_correct_content_length(env: Any) -> None:
    """A filter copying the client's content-length onto a bodyless call must not make the upstream
    wait for bytes that never come (the call would time out)."""
    gw, _, authz, _ = env
    started = time.monotonic()
    resp = _probe(gw, path="/length", copy_length="1")
    assert resp.status_code == 200 and resp.headers["x-call-status"] == "400", resp.text
    assert time.monotonic() - started < 1.2  # the call's timeout is 1.5 s
    assert authz.stats()["last_headers"].get("content-length", "0") == "0"


def test_tick_period_has_a_lower_bound(env: Any) -> None:
    """The plugin asks for 1 ms ticks; limits.min_tick_ms (100) holds it to about 10 a second."""
    gw, _, _, _ = env
    first = gw.metric("edgegw_plugin_counter_ticks_total", plugin="ticker")
    time.sleep(1.0)
    ticks = gw.metric("edgegw_plugin_counter_ticks_total", plugin="ticker") - first
    assert 3 <= ticks <= 15, ticks
    assert "tick period 1 ms raised to 100 ms" in gw.proc.log()
