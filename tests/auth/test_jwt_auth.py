"""JWT partner auth through a real gateway: every rejection, every key source, claims to permissions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.auth.jwks import JwksServer, jwk
from tests.conftest import DEMO_SECRET, gateway_config, issuer_config, start_fake_backend, start_gateway

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Keys:
    rsa = _rsa_key()
    rsa_other = _rsa_key()
    ec = ec.generate_private_key(ec.SECP256R1())
    ed = ed25519.Ed25519PrivateKey.generate()
    rotated = _rsa_key()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("jwt")
    jwks = {"keys": [jwk(Keys.rsa, "rsa-1", "RS256"), jwk(Keys.ec, "ec-1", "ES256"), jwk(Keys.ed, "ed-1", "EdDSA")]}
    (tmp / "jwks.json").write_text(json.dumps(jwks))
    (tmp / "partner.pem").write_bytes(Keys.rsa.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    server = JwksServer([jwk(Keys.rsa_other, "url-1")])
    backend = start_fake_backend(models="fake-model,other-model")
    config = gateway_config([backend], issuers=[
        issuer_config(),
        {"name": "rsa", "issuer": "https://rsa.idp", "algorithms": ["RS256", "PS256"],
         "jwks_file": str(tmp / "jwks.json"), "audience": "edgegw", "required_claims": ["sub"]},
        {"name": "ec", "issuer": "https://ec.idp", "algorithms": ["ES256", "EdDSA"],
         "jwks_file": str(tmp / "jwks.json")},
        {"name": "pem", "issuer": "https://pem.idp", "algorithms": ["RS256"],
         "public_key_file": str(tmp / "partner.pem"), "leeway_s": 0},
        {"name": "url", "issuer": "https://url.idp", "algorithms": ["RS256"], "jwks_url": server.url,
         "jwks_refresh_s": 1},
    ])
    config["pools"][0]["models"] = ["fake-model", "other-model"]
    config["routes"].append({"name": "admin-only", "paths": ["/v1/embeddings"], "issuers": ["test"]})
    config["routes"][0]["paths"] = ["/v1/chat/completions", "/v1/completions"]
    gw = start_gateway(tmp, config)
    yield gw, server, tmp
    gw.proc.stop()
    backend.proc.stop()
    server.server.shutdown()


def _claims(iss: str, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": iss, "sub": "partner-1", "aud": "edgegw", "iat": now, "exp": now + 600, **extra}


def _call(gw: Any, token: str | None, body: dict[str, Any] = CHAT, path: str = "/v1/chat/completions",
          **headers: str) -> httpx.Response:
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return httpx.post(gw.url + path, json=body, headers=headers, timeout=10)


def _assert_401(resp: httpx.Response, fragment: str) -> None:
    assert resp.status_code == 401, resp.text
    assert resp.headers["www-authenticate"].startswith('Bearer realm="edgegw", error="invalid_token"')
    error = resp.json()["error"]
    assert fragment in error["message"], error
    assert error["type"] == "authentication_error"


def test_valid_tokens_from_every_key_source(env: Any) -> None:
    """Each key source verifies its token, and the request runs as that token's issuer and subject (the
    access log's identity), not merely with a 200."""
    gw, _, _ = env
    signed = [
        ("test", gw.token(issuer="test", sub="via-hs256")),
        ("rsa", jwt.encode(_claims("https://rsa.idp", sub="via-rs256"), Keys.rsa, "RS256", headers={"kid": "rsa-1"})),
        ("rsa", jwt.encode(_claims("https://rsa.idp", sub="via-ps256"), Keys.rsa, "PS256", headers={"kid": "rsa-1"})),
        ("ec", jwt.encode(_claims("https://ec.idp", sub="via-es256"), Keys.ec, "ES256", headers={"kid": "ec-1"})),
        ("ec", jwt.encode(_claims("https://ec.idp", sub="via-eddsa"), Keys.ed, "EdDSA", headers={"kid": "ed-1"})),
        ("pem", jwt.encode(_claims("https://pem.idp", sub="via-pem"), Keys.rsa, "RS256")),
        ("url", jwt.encode(_claims("https://url.idp", sub="via-jwks-url"), Keys.rsa_other, "RS256",
                           headers={"kid": "url-1"})),
    ]
    expected = {}
    for issuer, token in signed:
        resp = _call(gw, token)
        assert resp.status_code == 200, resp.text
        expected[resp.headers["x-request-id"]] = (issuer, jwt.decode(token, options={"verify_signature": False})["sub"])
    seen = {}
    for line in gw.proc.log().splitlines():
        if line.startswith("{") and '"request_id"' in line:
            record = json.loads(line)
            if record["request_id"] in expected:
                seen[record["request_id"]] = (record["issuer"], record["subject"])
    assert seen == expected


def test_missing_and_malformed(env: Any) -> None:
    gw, _, _ = env
    _assert_401(_call(gw, None), "missing bearer token")
    resp = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers={"authorization": "Basic abc"})
    _assert_401(resp, "Bearer")
    _assert_401(_call(gw, "not-a-jwt"), "malformed token")
    _assert_401(_call(gw, "a.b.c"), "malformed token")


def test_oversized_token(env: Any) -> None:
    gw, _, _ = env
    token = gw.token(issuer="test", extra={"pad": "x" * 9000})
    _assert_401(_call(gw, token), "exceeds 8192 bytes")


def test_alg_none_rejected(env: Any) -> None:
    gw, _, _ = env
    token = jwt.encode(_claims("https://idp.test"), None, algorithm="none")
    _assert_401(_call(gw, token), "alg: none")


def test_algorithm_confusion_hs256_with_rsa_public_key(env: Any) -> None:
    gw, _, tmp = env
    # The classic attack: sign HS256 with the issuer's *public* key as the HMAC secret.
    public_pem = (tmp / "partner.pem").read_bytes()
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps(_claims("https://pem.idp")).encode())
    sig = b64(hmac.new(public_pem, f"{header}.{payload}".encode(), hashlib.sha256).digest())
    _assert_401(_call(gw, f"{header}.{payload}.{sig}"), "algorithm HS256 is not accepted")


def test_unknown_kid_and_bad_signature(env: Any) -> None:
    gw, _, _ = env
    token = jwt.encode(_claims("https://rsa.idp"), Keys.rsa, "RS256", headers={"kid": "nope"})
    _assert_401(_call(gw, token), "kid")
    forged = jwt.encode(_claims("https://rsa.idp"), Keys.rsa_other, "RS256", headers={"kid": "rsa-1"})
    _assert_401(_call(gw, forged), "signature is invalid")
    hs_forged = jwt.encode(_claims("https://idp.test"), "wrong-secret-wrong-secret-wrong-secret", "HS256")
    _assert_401(_call(gw, hs_forged), "signature is invalid")


def test_wrong_issuer_and_audience(env: Any) -> None:
    gw, _, _ = env
    _assert_401(_call(gw, jwt.encode(_claims("https://evil.idp"), DEMO_SECRET, "HS256")), "issuer is not trusted")
    token = jwt.encode(_claims("https://idp.test", aud="someone-else"), DEMO_SECRET, "HS256")
    _assert_401(_call(gw, token), "audience")


def test_expired_not_yet_valid_and_missing_claims(env: Any) -> None:
    gw, _, _ = env
    now = int(time.time())
    expired = jwt.encode(_claims("https://pem.idp", exp=now - 5), Keys.rsa, "RS256")
    _assert_401(_call(gw, expired), "expired")
    future = jwt.encode(_claims("https://pem.idp", nbf=now + 300), Keys.rsa, "RS256")
    _assert_401(_call(gw, future), "not yet valid")
    no_exp = _claims("https://idp.test")
    del no_exp["exp"]
    _assert_401(_call(gw, jwt.encode(no_exp, DEMO_SECRET, "HS256")), "'exp'")
    no_sub = _claims("https://rsa.idp")
    del no_sub["sub"]
    _assert_401(_call(gw, jwt.encode(no_sub, Keys.rsa, "RS256", headers={"kid": "rsa-1"})), "'sub'")


def test_issuer_restricted_route(env: Any) -> None:
    gw, _, _ = env
    rsa_token = jwt.encode(_claims("https://rsa.idp"), Keys.rsa, "RS256", headers={"kid": "rsa-1"})
    body = {"model": "fake-model", "input": "hello"}
    _assert_401(_call(gw, rsa_token, body, "/v1/embeddings"), "not accepted on this route")
    assert _call(gw, gw.token(issuer="test"), body, "/v1/embeddings").status_code == 200


def test_claims_limit_models_and_routes(env: Any) -> None:
    gw, _, _ = env
    limited = gw.token(issuer="test", models=["other-model"])
    resp = _call(gw, limited)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "model_forbidden"
    assert _call(gw, limited, {**CHAT, "model": "other-model"}).status_code == 200
    models = httpx.get(gw.url + "/v1/models", headers={"authorization": f"Bearer {limited}"}).json()
    assert [m["id"] for m in models["data"]] == ["other-model"]
    route_limited = gw.token(issuer="test", extra={"routes": ["admin-only"]})
    resp = _call(gw, route_limited)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "route_forbidden"


def test_jwks_url_refreshes_on_unknown_kid_at_most_once_per_interval(env: Any) -> None:
    gw, server, _ = env
    server.keys.append(jwk(Keys.rotated, "url-2", "RS256"))  # the IdP rotates in a new key
    time.sleep(1.1)  # past jwks_refresh_s since the start-up fetch
    before = server.fetches
    rotated = jwt.encode(_claims("https://url.idp"), Keys.rotated, "RS256", headers={"kid": "url-2"})
    assert _call(gw, rotated).status_code == 200
    assert server.fetches == before + 1
    started = time.monotonic()
    for i in range(20):  # made-up kids must not hammer the IdP
        _assert_401(_call(gw, jwt.encode(_claims("https://url.idp", n=i), Keys.rotated, "RS256",
                                         headers={"kid": f"bogus-{i}"})), "kid")
    # At most one refetch per jwks_refresh_s (1 s): on a busy machine the 20 calls may span more.
    intervals = time.monotonic() - started
    assert server.fetches - (before + 1) <= int(intervals) + 1 < 20


def test_tokens_never_logged(env: Any) -> None:
    gw, _, _ = env
    token = gw.token(issuer="test", sub="log-check")
    assert _call(gw, token).status_code == 200
    _call(gw, token + "tampered")
    time.sleep(0.2)
    log = gw.proc.log()
    assert '"subject":"log-check"' in log
    assert token.split(".")[2] not in log and token not in log
    assert DEMO_SECRET not in log
