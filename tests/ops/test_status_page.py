"""The operators' status page: sign-in into an HttpOnly cookie, the data, and a real browser."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from gateway.plugins.status import plugins_status
from gateway.status import render
from testkit.harness import ROOT
from tests.conftest import gateway_config
from tests.ops.cdp import Browser

ARTIFACTS = ROOT / "test-artifacts"
CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


@pytest.fixture
def gateway(make_backend: Any, make_gateway: Any) -> Any:
    backends = [make_backend(name="a"), make_backend(name="b")]
    gw = make_gateway(gateway_config(backends, server={"access_log": "off"}))
    user = {"authorization": f"Bearer {gw.token()}"}
    with httpx.Client(base_url=gw.url, headers=user, timeout=10) as client:
        for _ in range(20):
            assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
        failed = client.post("/v1/chat/completions", json=CHAT, headers={"x-fake-fault": "500"})
        assert failed.status_code == 500
        assert client.post("/v1/chat/completions", json={"model": "nope", "messages": []}).status_code >= 400
    return gw


def test_sign_in_sets_a_strict_httponly_cookie(gateway: Any) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        form = client.get("/admin")
        assert form.status_code == 200 and 'action="/admin/login"' in form.text
        assert "script-src 'self'" in form.headers["content-security-policy"]
        assert client.get("/admin/status.json").status_code == 401
        user = client.post("/admin/login", data={"token": gateway.token()})  # no admin scope
        assert user.status_code == 403 and "admin" in user.text and "edgegw_admin" not in user.headers.get(
            "set-cookie", "")
        assert client.post("/admin/login", data={"token": "not-a-jwt"}).status_code == 401
        admin = gateway.token(sub="ops", scopes=["admin"])
        cross = client.post("/admin/login", data={"token": admin}, headers={"origin": "https://evil.example"})
        assert cross.status_code == 403
        ok = client.post("/admin/login", data={"token": admin})
        assert ok.status_code == 303 and ok.headers["location"] == "/admin"
        cookie = ok.headers["set-cookie"].lower()
        assert all(flag in cookie for flag in ("edgegw_admin=", "httponly", "samesite=strict", "path=/admin"))
        page = client.get("/admin")
        assert "signed in as <b>ops</b>" in page.text and "Recent errors" in page.text
        status = client.get("/admin/status.json").json()
        (pool,) = status["pools"]
        assert {e["state"] for e in pool["endpoints"]} == {"healthy"}
        assert status["totals"]["requests"] >= 22 and status["totals"]["server_errors"] >= 1
        assert status["errors"][0]["status"] >= 400
        assert any(e["status"] == 500 and e["code"] for e in status["errors"])
        assert client.get("/admin/static/status.js").headers["content-type"].startswith("text/javascript")
        assert client.get("/admin/static/../app.py").status_code == 404
        client.post("/admin/logout")
        assert client.get("/admin/panel").status_code == 401


def test_plugins_and_subsystems_are_read_defensively() -> None:
    manager = SimpleNamespace(describe=lambda: [{
        "name": "api-keys", "failure_policy": "fail_closed",
        "stable": {"version": 3, "instance": "warm", "requests": 10, "failures": 0},
        "canary": {"version": 4, "weight": 0.1, "requests": 2, "failures": 1}, "events": []}])
    def plugin_rows(manager: object) -> Any:
        return plugins_status(SimpleNamespace(state=lambda key: manager), 0.0)["plugins"]  # type: ignore[arg-type]

    rows = plugin_rows(manager)
    assert rows[0]["version"] == 3 and rows[0]["canary"]["weight"] == 0.1
    assert "v4 at 10" in render.panel({"time": 0, "ready": True, "pools": [], "plugins": rows,
                                       "ratelimit": {"rejections": 0, "rejections_per_s": 0, "by_limit": {},
                                                     "fallbacks": 0, "redis_degraded": True},
                                       "cache": {"hits": 3, "misses": 1, "bypass": 0, "hit_ratio": 0.75},
                                       "totals": {"requests": 0, "server_errors": 0, "requests_per_s": 0,
                                                  "server_errors_per_s": 0},
                                       "series": {"bucket_s": 5, "requests_per_s": [0, 1],
                                                  "server_errors_per_s": [0, 0]},
                                       "errors": []})
    broken = SimpleNamespace(describe=lambda: 1 / 0)
    assert plugin_rows(broken)[0]["error"]
    assert plugin_rows(None) == []


def test_status_page_in_chromium(gateway: Any, tmp_path: Path) -> None:
    admin = gateway.token(sub="ops", scopes=["admin"])
    browser = Browser(tmp_path / "chromium-profile")
    try:
        browser.goto(gateway.url + "/admin")
        assert browser.js("document.querySelector('form textarea#token') !== null")
        # Type the token into the form and submit it, as an operator would.
        browser.js(f"document.getElementById('token').value = {admin!r}")
        browser.drain_events()
        browser.js("document.querySelector('form button[type=submit]').click()")
        browser.wait_event("Page.loadEventFired")
        assert browser.js("location.href") == gateway.url + "/admin"  # never a token in the URL
        assert browser.js("document.cookie") == ""  # HttpOnly: page scripts cannot read it
        cookies = browser.page("Network.getCookies", urls=[gateway.url + "/admin"])["cookies"]
        (cookie,) = [c for c in cookies if c["name"] == "edgegw_admin"]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        text = browser.js("document.body.textContent")
        for expected in ("signed in as ops", "Pools", "default", "healthy", "Requests", "Server errors",
                         "Rate-limit rejections", "Cache hit ratio", "Plugins", "Recent errors", "500"):
            assert expected in text, expected
        for backend_url in (e["url"] for e in gateway.config["pools"][0]["endpoints"]):
            assert backend_url in text
        assert browser.js("document.querySelectorAll('svg.spark polyline').length") >= 2
        # It refreshes itself: the script swaps in a new panel, and new traffic shows up.
        httpx.post(gateway.url + "/v1/chat/completions", json=CHAT, timeout=10,
                   headers={"authorization": f"Bearer {gateway.token()}", "x-fake-fault": "503"})
        browser.wait_for("Number(document.getElementById('updated').dataset.refreshes || 0) >= 1")
        browser.wait_for("document.body.textContent.includes('upstream_503')")
        ARTIFACTS.mkdir(exist_ok=True)
        browser.screenshot(ARTIFACTS / "status-page.png")
        assert (ARTIFACTS / "status-page.png").stat().st_size > 10_000
        # Signing out drops the cookie: the next refresh sends the browser back to the form.
        browser.drain_events()
        browser.js("document.querySelector('header form button').click()")
        browser.wait_event("Page.loadEventFired")
        assert browser.wait_for("document.querySelector('textarea#token') !== null")
    finally:
        browser.close()
