"""Shared by the edge auth tests: tokens forged byte by byte, and the checks every 401 must pass."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx

from tests.conftest import DEMO_SECRET

ISSUER = "https://idp.test"  # tests.conftest.issuer_config()
CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: Any, payload: Any, secret: str = DEMO_SECRET) -> str:
    """An HS256-signed token whose header and payload are given as objects or as raw bytes, so it
    can carry what no JWT library would write (a numeric kid, exp = 10^400, a header that is a list)."""
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    signing_input = f"{b64(head)}.{b64(body)}"
    sig = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(sig)}"


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "sub": "partner-1", "aud": "edgegw", "iat": now, "exp": now + 600, **extra}


def assert_401(resp: httpx.Response) -> None:
    assert resp.status_code == 401, (resp.status_code, resp.text)
    assert resp.headers["www-authenticate"].startswith('Bearer realm="edgegw", error="invalid_token"')
    error = resp.json()["error"]
    assert error["type"] == "authentication_error" and error["message"] and error["code"], error
