"""JWKS wipe: an identity provider that answers an empty, malformed or failing key set on the refetch
an unknown `kid` forces must not lock out every valid token; the bad refresh is logged and counted,
and a real rotation afterwards is still picked up."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.auth.jwks import JwksServer, jwk
from tests.conftest import gateway_config, start_fake_backend, start_gateway
from tests.security._auth_support import CHAT, assert_401

ISS = "https://jwks.idp"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEY, ROTATED = _key(), _key()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, JwksServer]]:
    idp = JwksServer([jwk(KEY, "k1")])
    backend = start_fake_backend()
    config = gateway_config([backend])
    config["issuers"].append({"name": "idp", "issuer": ISS, "algorithms": ["RS256"], "jwks_url": idp.url,
                              "jwks_refresh_s": 1, "audience": "edgegw"})
    gw = start_gateway(tmp_path_factory.mktemp("jwks"), config)
    yield gw, idp
    gw.proc.stop()
    backend.proc.stop()
    idp.server.shutdown()


def _token(key: rsa.RSAPrivateKey, kid: str, **extra: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISS, "sub": "p", "aud": "edgegw", "iat": now, "exp": now + 600, **extra}
    return jwt.encode(claims, key, "RS256", headers={"kid": kid})


def _call(gw: Any, token: str) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=10,
                      headers={"authorization": f"Bearer {token}"})


@pytest.mark.parametrize("mode", ["empty", "no-keys", "garbage", "500", "bad-keys"])
def test_a_bad_refetch_keeps_the_last_good_keys(env: tuple[Any, JwksServer], mode: str) -> None:
    gw, idp = env
    good = _token(KEY, "k1", mode=mode)
    assert _call(gw, good).status_code == 200
    failures = gw.metric("edgegw_jwks_refresh_failures_total", issuer="idp")
    idp.mode = mode
    try:
        time.sleep(1.1)  # past jwks_refresh_s: the next unknown kid forces a refetch
        before = idp.fetches
        assert_401(_call(gw, _token(KEY, f"made-up-{mode}")))
        assert idp.fetches == before + 1
        # Every valid token keeps working with the keys fetched before.
        for i in range(3):
            assert _call(gw, _token(KEY, "k1", n=i)).status_code == 200
        assert gw.metric("edgegw_jwks_refresh_failures_total", issuer="idp") == failures + 1
    finally:
        idp.mode = "ok"
    time.sleep(0.2)
    assert "JWKS from" in gw.proc.log() and "Traceback" not in gw.proc.log()


def test_a_real_rotation_still_replaces_the_keys(env: tuple[Any, JwksServer]) -> None:
    gw, idp = env
    idp.keys = [jwk(ROTATED, "k2")]  # the IdP retires k1
    time.sleep(1.1)
    assert _call(gw, _token(ROTATED, "k2")).status_code == 200
    assert_401(_call(gw, _token(KEY, "k1", after="rotation")))
