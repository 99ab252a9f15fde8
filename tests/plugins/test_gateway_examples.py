"""Each example plugin, and each sandbox-abuse plugin, through a real gateway process."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import gateway_config, start_fake_backend, start_gateway
from tests.plugins.conftest import AUTH_CONFIG, REDACT_CONFIG, ROUTER_CONFIG, plugin_entry


def _route(name: str, model: str, plugins: list[tuple[str, str]], **extra: Any) -> dict[str, Any]:
    return {"name": name, "paths": ["/v1/completions", "/v1/chat/completions"], "models": [model],
            "pool": "default", "plugins": [{"name": n, "phase": p} for n, p in plugins], **extra}


@pytest.fixture(scope="module")
def env(plugins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    a, b = start_fake_backend(name="a"), start_fake_backend(name="b")
    cfg = gateway_config([a])
    cfg["pools"][0]["models"] = ["fake-model", "m-*"]
    cfg["pools"].append({"name": "premium", "endpoints": [{"url": b.url}],
                         "health": {"interval_s": 0.2, "timeout_s": 0.5}})
    cfg["plugins"] = [
        plugin_entry("auth", plugins["auth"], config=AUTH_CONFIG),
        plugin_entry("router", plugins["router"], config=ROUTER_CONFIG),
        plugin_entry("redact", plugins["redact"], config=REDACT_CONFIG),
        plugin_entry("callout", plugins["callout"], upstreams={"authz": b.url}),
        plugin_entry("loop", plugins["loop"], limits={"deadline_ms": 5}),
        plugin_entry("loop_open", plugins["loop"], failure_policy="fail_open", limits={"deadline_ms": 5}),
        plugin_entry("membomb", plugins["membomb"], limits={"memory_mb": 8}),
        plugin_entry("trap", plugins["trap"]),
        plugin_entry("garbage", plugins["garbage"]),
    ]
    cfg["routes"] = [
        _route("partner", "m-partner", [("auth", "auth"), ("router", "routing"), ("redact", "preprocess")],
               auth="plugin"),
        _route("jwt-routed", "m-jwt", [("router", "routing")]),
        _route("callout", "m-callout", [("callout", "auth")], auth="none"),
        *[_route(n, f"m-{n}", [(n, "auth")], auth="none")
          for n in ("loop", "loop_open", "membomb", "trap", "garbage")],
        *cfg["routes"],
    ]
    gw = start_gateway(tmp_path_factory.mktemp("examples"), cfg)
    yield gw, a, b
    gw.proc.stop()
    a.proc.stop()
    b.proc.stop()


def _post(gw: Any, model: str, headers: dict[str, str] | None = None, **body: Any) -> httpx.Response:
    payload = {"model": model, "prompt": "hello", "max_tokens": 2, **body}
    return httpx.post(gw.url + "/v1/completions", json=payload, headers=headers or {}, timeout=10)


def test_auth_api_key(env: Any) -> None:
    gw, a, b = env
    resp = _post(gw, "m-partner", {"x-api-key": "key-beta"})
    assert resp.status_code == 200, resp.text
    assert "x-api-key" not in a.stats()["last_headers"]  # the partner's secret never goes upstream
    for headers, code in (({"x-api-key": "wrong"}, "invalid_api_key"), ({}, "missing_credentials")):
        resp = _post(gw, "m-partner", headers)
        assert resp.status_code == 401 and resp.json()["error"]["code"] == code


def test_auth_hmac_signature(env: Any) -> None:
    gw, a, b = env
    body = b'{"model":"m-partner","prompt":"signed","max_tokens":2}'
    ts = str(int(time.time()))
    sig = hmac.new(b"c-secret", ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    headers = {"content-type": "application/json", "x-edgegw-key-id": "partner-c", "x-edgegw-timestamp": ts}
    ok = httpx.post(gw.url + "/v1/completions", content=body, headers={**headers, "x-edgegw-signature": sig})
    assert ok.status_code == 200, ok.text
    bad = httpx.post(gw.url + "/v1/completions", content=body, headers={**headers, "x-edgegw-signature": "0" * 64})
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_signature"
    old = str(int(time.time()) - 3600)
    sig = hmac.new(b"c-secret", old.encode() + b"." + body, hashlib.sha256).hexdigest()
    stale = httpx.post(gw.url + "/v1/completions", content=body,
                       headers={**headers, "x-edgegw-timestamp": old, "x-edgegw-signature": sig})
    assert stale.status_code == 401 and stale.json()["error"]["code"] == "stale_signature"


def test_routing_by_tenant_header_and_claim(env: Any) -> None:
    gw, a, b = env
    b.control(reset=True)
    # partner-a's tenant (set by the auth plugin) is acme -> premium pool
    assert _post(gw, "m-partner", {"x-api-key": "key-alpha"}).status_code == 200
    assert b.stats()["requests"] == 1 and b.stats()["last_headers"]["x-edgegw-pool"] == "premium"
    # partner-b (globex) -> default pool
    assert _post(gw, "m-partner", {"x-api-key": "key-beta"}).status_code == 200
    assert b.stats()["requests"] == 1
    # JWT route: a claim, and a header
    gold = {"authorization": f"Bearer {gw.token(tier='gold')}"}
    assert _post(gw, "m-jwt", gold).status_code == 200 and b.stats()["requests"] == 2
    plain = {"authorization": f"Bearer {gw.token()}"}
    assert _post(gw, "m-jwt", plain).status_code == 200 and b.stats()["requests"] == 2
    assert _post(gw, "m-jwt", {**plain, "x-partner-tier": "premium"}).status_code == 200
    assert b.stats()["requests"] == 3
    assert gw.metric("edgegw_plugin_counter_routed_requests_total", plugin="router") >= 5


def test_preprocess_redacts_and_clamps(env: Any) -> None:
    gw, a, b = env
    prompt = "mail jane.doe@example.com or call +1 (415) 555-0132, ref 2026-11-28"
    resp = _post(gw, "m-partner", {"x-api-key": "key-beta"}, prompt=prompt, max_tokens=500)
    assert resp.status_code == 200
    assert resp.json()["usage"]["completion_tokens"] == 16  # clamped to the configured max_tokens
    assert a.stats()["last_headers"]["x-edgegw-redactions"] == "2"


def test_http_call_authorization(env: Any) -> None:
    gw, a, b = env
    assert _post(gw, "m-callout").status_code == 200
    b.control(health=503)
    try:
        resp = _post(gw, "m-callout")
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "authz_denied"
    finally:
        b.control(health=200)


def test_infinite_loop_fails_within_deadline_then_serves(env: Any) -> None:
    gw, a, b = env
    for _ in range(3):
        started = time.monotonic()
        resp = _post(gw, "m-loop", {"x-abuse": "1"})
        elapsed = time.monotonic() - started
        assert resp.status_code == 500 and resp.json()["error"]["code"] == "plugin_failed"
        assert "timeout" in resp.json()["error"]["message"]
        assert elapsed < 0.25, elapsed  # 5 ms deadline + margin (HTTP round trip included)
        assert _post(gw, "m-loop").status_code == 200  # a fresh instance serves the next request
    # fail_open: the request goes through without the plugin
    assert _post(gw, "m-loop_open", {"x-abuse": "1"}).status_code == 200
    assert gw.metric("edgegw_plugin_failures_total", plugin="loop", reason="timeout") >= 3
    assert gw.metric("edgegw_plugin_skipped_total", plugin="loop_open") >= 1


@pytest.mark.parametrize(("model", "abuse", "reason"), [
    ("m-membomb", "1", "memory"), ("m-trap", "1", "trap"), ("m-trap", "r", "stack"),
    ("m-garbage", "m", "bad_map"), ("m-garbage", "p", "bad_pointer")])
def test_abuse_is_contained(env: Any, model: str, abuse: str, reason: str) -> None:
    gw, a, b = env
    resp = _post(gw, model, {"x-abuse": abuse})
    assert resp.status_code == 500, resp.text
    assert resp.json()["error"]["message"].endswith(f"({reason})")
    assert _post(gw, model).status_code == 200
    assert httpx.get(gw.url + "/healthz").status_code == 200
    assert gw.metric("edgegw_plugin_failures_total", reason=reason) >= 1
