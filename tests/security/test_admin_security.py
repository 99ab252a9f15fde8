"""The admin surface against a page the operator visits and a partner IdP: cookie requests that
change state need a same-origin Origin and the CSRF token (double submit), bearer requests do not;
sign-in refuses other and opaque origins; only `admin.issuer` may administer, and a config must name
it; a chunked plugin upload is capped like a declared one."""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import wasmtime
import yaml

from testkit.harness import EDGEGW, ROOT
from tests.conftest import gateway_config, issuer_config, start_fake_backend, start_gateway

PARTNER_SECRET = "partner-secret-0123456789-abcdefghijklmnop"
os.environ.setdefault("EDGEGW_TEST_SECRET_PARTNER", PARTNER_SECRET)
MAX_UPLOAD = 64 << 20  # gateway.plugins.admin.MAX_UPLOAD


@pytest.fixture(scope="module")
def wasm() -> bytes:
    """A real plugin from the repo's sources (it only misbehaves when asked to)."""
    return bytes(wasmtime.wat2wasm((ROOT / "wasm_plugins/examples/wat/trap.wat").read_text()))


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("admin-sec")
    (tmp / "plugins").mkdir()
    backend = start_fake_backend()
    config = gateway_config([backend], plugin_dir=str(tmp / "plugins"), server={"access_log": "off"})
    config["issuers"].append(issuer_config(name="partner", issuer="https://partner.idp",
                                           secret_env="EDGEGW_TEST_SECRET_PARTNER"))
    gateway = start_gateway(tmp, config)
    yield gateway
    gateway.proc.stop()
    backend.proc.stop()


def _signed_in(gw: Any) -> tuple[httpx.Client, str]:
    """A client holding the status page's cookies, and the CSRF token the page hands its script."""
    client = httpx.Client(base_url=gw.url, timeout=30)
    resp = client.post("/admin/login", data={"token": gw.token(sub="ops", scopes=["admin"])},
                       headers={"origin": gw.url})
    assert resp.status_code == 303, resp.text
    page = client.get("/admin")
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', page.text)
    assert match, page.text[:500]
    token = match.group(1)
    assert client.cookies.get("edgegw_csrf") == token  # double submit: cookie and page agree
    assert f'name="csrf_token" value="{token}"' in page.text  # the sign-out form carries it too
    return client, token


def test_cookie_state_changes_need_same_origin_and_the_csrf_token(gw: Any, wasm: bytes) -> None:
    client, csrf = _signed_in(gw)
    same = gw.url
    refused = {
        "cross-origin with the token": {"origin": "https://evil.example", "x-csrf-token": csrf},
        "null origin with the token": {"origin": "null", "x-csrf-token": csrf},
        "same origin, no token": {"origin": same},
        "same origin, wrong token": {"origin": same, "x-csrf-token": csrf[:-2] + "xx"},
        "no origin at all, with the token": {"x-csrf-token": csrf},
        "cross-site fetch metadata": {"sec-fetch-site": "cross-site", "x-csrf-token": csrf},
        "other port": {"origin": same.rsplit(":", 1)[0] + ":1", "x-csrf-token": csrf},
    }
    try:
        for name, headers in refused.items():
            for method, path in (("PUT", "/admin/plugins/p1"), ("DELETE", "/admin/plugins/p1"),
                                 ("POST", "/admin/plugins/p1/rollback"), ("POST", "/admin/plugins/p1/promote")):
                resp = client.request(method, path, content=wasm, headers=headers)
                assert resp.status_code == 403, (name, method, resp.text)
                assert resp.json()["error"]["code"] in ("csrf_origin", "csrf_token"), (name, resp.text)
        assert httpx.get(gw.url + "/admin/plugins/p1", headers=_bearer(gw)).status_code == 404  # nothing loaded
        # From the status page itself: Origin (or Sec-Fetch-Site) and the token.
        ok = client.put("/admin/plugins/p1", content=wasm, headers={"origin": same, "x-csrf-token": csrf})
        assert ok.status_code == 201, ok.text
        ok = client.put("/admin/plugins/p2", content=wasm,
                        headers={"sec-fetch-site": "same-origin", "x-csrf-token": csrf})
        assert ok.status_code == 201, ok.text
        # Reading needs no token (and another site cannot read the answer anyway).
        assert client.get("/admin/plugins", headers={"origin": "https://evil.example"}).status_code == 200
        gone = client.delete("/admin/plugins/p2", headers={"origin": same, "x-csrf-token": csrf})
        assert gone.status_code == 200, gone.text
        # Sign-out: refused from another site, fine from the page.
        assert client.post("/admin/logout", headers={"origin": "https://evil.example"}).status_code == 403
        assert client.get("/admin/status.json").status_code == 200
        assert client.post("/admin/logout", headers={"origin": same}).status_code == 303
        assert client.get("/admin/status.json").status_code == 401
    finally:
        client.close()


def _bearer(gw: Any) -> dict[str, str]:
    return {"authorization": f"Bearer {gw.token(sub='ops', scopes=['admin'])}"}


def test_bearer_requests_are_not_csrf_checked(gw: Any, wasm: bytes) -> None:
    resp = httpx.put(gw.url + "/admin/plugins/b1", content=wasm, headers=_bearer(gw), timeout=30)
    assert resp.status_code == 201, resp.text
    # A bearer header wins over a cookie, so a stale cookie does not force the CSRF check on scripts.
    resp = httpx.delete(gw.url + "/admin/plugins/b1", timeout=30,
                        headers={**_bearer(gw), "cookie": "edgegw_admin=stale"})
    assert resp.status_code == 200, resp.text


def test_sign_in_refuses_other_and_opaque_origins(gw: Any) -> None:
    token = gw.token(sub="ops", scopes=["admin"])
    for headers in ({"origin": "null"}, {"origin": "https://evil.example"}, {"sec-fetch-site": "cross-site"},
                    {"origin": "file://"}):
        resp = httpx.post(gw.url + "/admin/login", data={"token": token}, headers=headers, timeout=10)
        assert resp.status_code == 403, (headers, resp.text)
        assert "edgegw_admin" not in resp.headers.get("set-cookie", "")
    ok = httpx.post(gw.url + "/admin/login", data={"token": token}, timeout=10, headers={"origin": gw.url})
    assert ok.status_code == 303
    cookies = ok.headers.get_list("set-cookie")
    assert any(c.startswith("edgegw_csrf=") and "HttpOnly" in c and "SameSite=strict" in c for c in cookies)


def test_only_the_admin_issuer_may_administer(gw: Any) -> None:
    now = int(time.time())
    partner_admin = jwt.encode({"iss": "https://partner.idp", "sub": "ops", "aud": "edgegw", "iat": now,
                                "exp": now + 600, "scope": "admin"}, PARTNER_SECRET)
    resp = httpx.get(gw.url + "/admin/plugins", headers={"authorization": f"Bearer {partner_admin}"}, timeout=10)
    assert resp.status_code == 401 and "not accepted" in resp.json()["error"]["message"]
    login = httpx.post(gw.url + "/admin/login", data={"token": partner_admin}, timeout=10)
    assert login.status_code == 401 and "edgegw_admin" not in login.headers.get("set-cookie", "")
    assert httpx.get(gw.url + "/admin/plugins", headers=_bearer(gw), timeout=10).status_code == 200


def test_config_must_name_the_admin_issuer(tmp_path: Path) -> None:
    config = gateway_config([])
    config["pools"][0]["endpoints"] = [{"url": "http://127.0.0.1:9"}]
    del config["admin"]
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(config))
    check = subprocess.run([*EDGEGW, "check-config", str(path)], capture_output=True, text=True, cwd=ROOT)
    assert check.returncode != 0
    assert f"{path}: admin.issuer:" in check.stderr + check.stdout, check.stderr
    config["admin"] = {"enabled": False}
    path.write_text(yaml.safe_dump(config))
    check = subprocess.run([*EDGEGW, "check-config", str(path)], capture_output=True, text=True, cwd=ROOT)
    assert check.returncode == 0, check.stderr


def test_admin_disabled_answers_404(tmp_path: Path) -> None:
    backend = start_fake_backend()
    config = gateway_config([backend], admin={"enabled": False})
    gateway = start_gateway(tmp_path, config)
    try:
        token = gateway.token(sub="ops", scopes=["admin"])
        for path in ("/admin", "/admin/status.json", "/admin/pools"):
            resp = httpx.get(gateway.url + path, headers={"authorization": f"Bearer {token}"}, timeout=10)
            assert resp.status_code == 404, (path, resp.text)
        assert httpx.post(gateway.url + "/admin/login", data={"token": token}, timeout=10).status_code == 404
    finally:
        gateway.proc.stop()
        backend.proc.stop()


def _chunked_upload(gw: Any, total: int, chunk: int = 1 << 20) -> bytes:
    """PUT a plugin as Transfer-Encoding: chunked (no Content-Length), stopping as soon as the
    gateway answers; returns the response head."""
    token = gw.token(sub="ops", scopes=["admin"])
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=30)
    try:
        sock.sendall(f"PUT /admin/plugins/big HTTP/1.1\r\nHost: 127.0.0.1:{gw.port}\r\n"
                     f"Authorization: Bearer {token}\r\nContent-Type: application/wasm\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        frame = f"{chunk:x}\r\n".encode() + b"\0" * chunk + b"\r\n"
        sent = 0
        while sent < total:
            if select.select([sock], [], [], 0)[0]:
                break  # answered early
            try:
                sock.sendall(frame)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += chunk
        else:
            sock.sendall(b"0\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(65536)
            if not data:
                break
            head += data
        return head
    finally:
        sock.close()


def test_chunked_plugin_upload_is_capped(gw: Any) -> None:
    head = _chunked_upload(gw, MAX_UPLOAD + (4 << 20))
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    # A declared Content-Length over the cap is refused before any byte is read, as before.
    with socket.create_connection(("127.0.0.1", gw.port), timeout=30) as sock:
        sock.sendall(f"PUT /admin/plugins/big HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     f"{gw.token(sub='ops', scopes=['admin'])}\r\nContent-Length: {MAX_UPLOAD + 1}\r\n\r\n".encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 413")
    # Small chunked uploads still work.
    small = _chunked_upload(gw, 1 << 20, chunk=1 << 20)
    assert small.startswith(b"HTTP/1.1 422") or small.startswith(b"HTTP/1.1 201"), small[:200]
    assert httpx.get(gw.url + "/healthz", timeout=10).status_code == 200


def test_status_page_script_sends_the_csrf_token_in_chromium(gw: Any, wasm: bytes, tmp_path: Path) -> None:
    """A real browser: sign in through the form, then state changes from the page's own script pass
    (it sends the token), a plain fetch without it is refused, and sign-out works."""
    from tests.ops.cdp import Browser

    assert httpx.put(gw.url + "/admin/plugins/web", content=wasm, headers=_bearer(gw), timeout=30).status_code == 201
    browser = Browser(tmp_path / "chromium-profile")
    try:
        browser.goto(gw.url + "/admin")
        browser.js(f"document.getElementById('token').value = {gw.token(sub='ops', scopes=['admin'])!r}")
        browser.drain_events()
        browser.js("document.querySelector('form button[type=submit]').click()")
        browser.wait_event("Page.loadEventFired")
        assert browser.js("location.href") == gw.url + "/admin"
        assert "signed in as ops" in browser.js("document.body.textContent")
        plain = browser.js("fetch('/admin/plugins/web', {method: 'DELETE'}).then(r => r.status)")
        assert plain == 403
        with_token = browser.js("window.edgegwFetch('/admin/plugins/web', {method: 'DELETE'}).then(r => r.status)")
        assert with_token == 200
        assert httpx.get(gw.url + "/admin/plugins/web", headers=_bearer(gw), timeout=10).status_code == 404
        browser.drain_events()
        browser.js("document.querySelector('header form button').click()")
        browser.wait_event("Page.loadEventFired")
        assert browser.wait_for("document.querySelector('textarea#token') !== null")
    finally:
        browser.close()
