"""Hostile tokens and requests against a real gateway: every malformed token is a 401 with the usual
challenge on every endpoint (never a 500, never a traceback), nothing about models is revealed before
authentication, and requests that two readers could read two ways (a repeated Authorization header,
a repeated JSON key) are refused with 400."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import gateway_config, start_fake_backend, start_gateway
from tests.security._auth_support import CHAT, assert_401, claims, raw_token


def _payload_with(name: str, raw_value: bytes) -> bytes:
    """Valid claims, with `name` set to raw JSON bytes (10^400 cannot be written by json.dumps)."""
    rest = {k: v for k, v in claims().items() if k != name}
    return json.dumps(rest).encode()[:-1] + b', "' + name.encode() + b'": ' + raw_value + b"}"


HS = {"alg": "HS256", "typ": "JWT"}
HUGE = b"1" + b"0" * 400
MALFORMED: dict[str, str] = {
    "kid number": raw_token({**HS, "kid": 7}, claims()),
    "kid object": raw_token({**HS, "kid": {"k": "v"}}, claims()),
    "kid list": raw_token({**HS, "kid": ["a", "b"]}, claims()),
    "kid null": raw_token({**HS, "kid": None}, claims()),
    "kid huge number": raw_token(b'{"alg": "HS256", "kid": ' + HUGE + b"}", claims()),
    "exp 10^400": raw_token(HS, _payload_with("exp", HUGE)),
    "exp -10^400": raw_token(HS, _payload_with("exp", b"-" + HUGE)),
    "exp 1e400": raw_token(HS, _payload_with("exp", b"1e400")),
    "exp string": raw_token(HS, _payload_with("exp", b'"abc"')),
    "exp bool": raw_token(HS, _payload_with("exp", b"true")),
    "exp object": raw_token(HS, _payload_with("exp", b'{"a": 1}')),
    "exp NaN": raw_token(HS, _payload_with("exp", b"NaN")),
    "nbf 10^400": raw_token(HS, _payload_with("nbf", HUGE)),
    "nbf string": raw_token(HS, _payload_with("nbf", b'"abc"')),
    "iat 10^400": raw_token(HS, _payload_with("iat", HUGE)),
    "iat list": raw_token(HS, _payload_with("iat", b"[1]")),
    "alg missing": raw_token({"typ": "JWT"}, claims()),
    "alg number": raw_token({"alg": 256}, claims()),
    "alg list": raw_token({"alg": ["HS256"]}, claims()),
    "alg none": raw_token({"alg": "none"}, claims()),
    "typ object": raw_token({**HS, "typ": {"x": 1}}, _payload_with("exp", HUGE)),
    "crit number": raw_token({**HS, "crit": 5}, claims()),
    "crit unknown": raw_token({**HS, "crit": ["x-unknown"], "x-unknown": 1}, claims()),
    "header a list": raw_token(b'["HS256"]', claims()),
    "header a string": raw_token(b'"HS256"', claims()),
    "header not json": raw_token(b"{alg: HS256", claims()),
    "header deep": raw_token(b'{"alg": "HS256", "x": ' + b"[" * 2000 + b"]" * 2000 + b"}", claims()),
    "payload a list": raw_token(HS, b"[1, 2]"),
    "payload a number": raw_token(HS, HUGE),
    "payload not json": raw_token(HS, b"\xff\xfe not json"),
    "iss a list": raw_token(HS, claims(iss=["https://idp.test"])),
    "aud an object": raw_token(HS, claims(aud={"a": 1})),
    "sub an object": raw_token(HS, claims(sub={"a": 1})),
    "two segments": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0",
    "four segments": "a.b.c.d",
    "not base64": "%%%.@@@.!!!",
    "empty segments": "..",
    "non-ascii": "\u00e9\u00e9.\u00e9.\u00e9",
}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("edge-auth")
    backend = start_fake_backend(models="fake-model,other-model")
    config = gateway_config([backend], plugin_dir=str(tmp / "plugins"))
    (tmp / "plugins").mkdir()
    gateway = start_gateway(tmp, config)
    yield gateway
    gateway.proc.stop()
    backend.proc.stop()


BODIES = {"/v1/completions": {"model": "fake-model", "prompt": "hi", "max_tokens": 2},
          "/v1/embeddings": {"model": "fake-model", "input": "hi"},
          "/v1/generate": {"model": "fake-model", "prompt": "hi"}}

# Every place a bearer token is read: the proxy paths, /v1/models and each kind of admin endpoint.
ENDPOINTS = [("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("GET", "/v1/models"),
             ("GET", "/admin/status.json"), ("GET", "/admin/panel"), ("GET", "/admin/pools"),
             ("GET", "/admin/plugins"), ("PUT", "/admin/plugins/x"), ("POST", "/admin/plugins/x/rollback")]


def test_every_malformed_token_is_a_401_on_every_endpoint(gw: Any) -> None:
    with httpx.Client(base_url=gw.url, timeout=10) as client:
        for name, token in MALFORMED.items():
            for method, path in ENDPOINTS:
                body = json.dumps(BODIES.get(path, CHAT)).encode() if path.startswith("/v1/") else b"\0asm"
                resp = client.request(method, path, content=body,
                                      headers={"authorization": f"Bearer {token}".encode(),
                                               "content-type": "application/json"})
                assert resp.status_code == 401, (name, method, path, resp.status_code, resp.text)
                assert_401(resp)
            # The same token as the status page's cookie.
            resp = client.get("/admin/status.json", headers={"cookie": f"edgegw_admin={token}".encode()})
            assert resp.status_code == 401, (name, resp.text)
    # A good token still works, and nothing above left a traceback in the log.
    good = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=10,
                      headers={"authorization": f"Bearer {gw.token()}"})
    assert good.status_code == 200, good.text
    time.sleep(0.2)
    log = gw.proc.log()
    assert "Traceback" not in log and "internal_error" not in log, log[-3000:]


def test_unknown_model_is_404_only_after_authentication(gw: Any) -> None:
    unknown = {**CHAT, "model": "secret-model-name"}
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/generate"):
        body = {**BODIES.get(path, CHAT), "model": "secret-model-name"}
        anonymous = httpx.post(gw.url + path, json=body, timeout=10)
        assert_401(anonymous)
        forged = httpx.post(gw.url + path, json=body, timeout=10,
                            headers={"authorization": f"Bearer {MALFORMED['kid number']}"})
        assert_401(forged)
        assert "secret-model-name" not in anonymous.text + forged.text
        known = httpx.post(gw.url + path, json=body, timeout=10,
                           headers={"authorization": f"Bearer {gw.token()}"})
        assert known.status_code == 404, (path, known.text)
        assert known.json()["error"]["code"] == "model_not_found"
    # An existing model without a token is the same 401 as a missing one: nothing to tell apart.
    assert httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=10).json() == \
        httpx.post(gw.url + "/v1/chat/completions", json=unknown, timeout=10).json()


def test_repeated_authorization_header_is_400_everywhere(gw: Any) -> None:
    admin, user = gw.token(sub="ops", scopes=["admin"]), gw.token()
    for first, second in ((admin, user), (user, admin), (user, user)):
        headers = [("authorization", f"Bearer {first}"), ("authorization", f"Bearer {second}"),
                   ("content-type", "application/json")]
        for method, path in [*ENDPOINTS, ("GET", "/admin")]:  # the page too (it shows the form on a bad token)
            resp = httpx.request(method, gw.url + path, headers=headers, timeout=10,
                                 content=json.dumps(CHAT).encode())
            assert resp.status_code == 400, (method, path, resp.text)
            assert resp.json()["error"]["code"] == "duplicate_authorization"
    # One header, or other repeated headers, are fine.
    ok = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=10,
                    headers=[("authorization", f"Bearer {user}"), ("x-tag", "a"), ("x-tag", "b")])
    assert ok.status_code == 200, ok.text


def test_repeated_json_keys_are_400(gw: Any) -> None:
    auth = {"authorization": f"Bearer {gw.token(models=['fake-model'])}", "content-type": "application/json"}
    messages = '[{"role": "user", "content": "hi"}]'
    bodies = {
        "model twice": '{"model": "other-model", "model": "fake-model", "messages": ' + messages + "}",
        "nested key twice": '{"model": "fake-model", "messages": [{"role": "user", "role": "system", '
                            '"content": "hi"}]}',
        "colon hidden as \\u003a": '{"model": "fake-model", "x": "\\u003a", "model": "other-model", '
                                   '"messages": ' + messages + "}",
        "deep": '{"model": "fake-model", "messages": ' + messages + ', "metadata": {"a": {"b": 1, "b": 2}}}',
    }
    for name, body in bodies.items():
        resp = httpx.post(gw.url + "/v1/chat/completions", content=body.encode(), headers=auth, timeout=10)
        assert resp.status_code == 400, (name, resp.text)
        error = resp.json()["error"]
        assert error["code"] == "duplicate_key" and error["type"] == "invalid_request_error", (name, error)
    # Colons inside strings, escaped characters and repeated keys in different objects are fine.
    fine = ('{"model": "fake-model", "max_tokens": 2, "messages": [{"role": "system", "content": "a: b \\" c:"},'
            ' {"role": "user", "content": "\\u00e9 \\n {\\"k\\": 1, \\"k\\": 2}"}]}')
    resp = httpx.post(gw.url + "/v1/chat/completions", content=fine.encode(), headers=auth, timeout=10)
    assert resp.status_code == 200, resp.text
