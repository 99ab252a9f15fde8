"""Isolation by issuer: two identity providers that both sign `sub: alice` (or no `sub` at all) name
two different callers. Neither gets a cache hit on the other's entry nor shares its rate-limit
bucket, with the limits counted in memory and in a real Redis."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from testkit.harness import RedisServer
from tests.conftest import DEMO_SECRET, gateway_config, issuer_config, start_fake_backend, start_gateway

OTHER_SECRET = "other-secret-0123456789-abcdefghijklmnopq"
os.environ.setdefault("EDGEGW_TEST_SECRET_OTHER", OTHER_SECRET)
ISSUERS = {"test": ("https://idp.test", DEMO_SECRET), "other": ("https://other.idp", OTHER_SECRET)}
LIMIT = 2


def _token(issuer: str, sub: str | None, tenant: str | None = None) -> str:
    """An HS256 token of `issuer`; without `sub` when sub is None (as some client-credential IdPs do)."""
    iss, secret = ISSUERS[issuer]
    now = int(time.time())
    claims: dict[str, Any] = {"iss": iss, "aud": "edgegw", "iat": now, "exp": now + 600}
    if sub is not None:
        claims["sub"] = sub
    if tenant is not None:
        claims["tenant"] = tenant
    return jwt.encode(claims, os.environ.get("EDGEGW_TEST_SECRET", secret) if issuer == "test" else secret)


@pytest.fixture(scope="module", params=["memory", "redis"])
def gw(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    redis = RedisServer().start() if request.param == "redis" else None
    backend = start_fake_backend()
    config = gateway_config([backend])
    config["issuers"].append(issuer_config(name="other", issuer="https://other.idp",
                                           secret_env="EDGEGW_TEST_SECRET_OTHER"))
    config["routes"] = [
        {"name": "cached", "paths": ["/v1/completions"], "cache": {"when": "always", "ttl_s": 60}},
        {"name": "limited", "paths": ["/v1/chat/completions"],
         "rate_limits": [{"name": "per-sub", "key": ["subject"], "requests_per_minute": LIMIT}]},
        {"name": "tenant-limited", "paths": ["/v1/embeddings"],
         "rate_limits": [{"name": "per-tenant", "key": ["tenant", "model"], "requests_per_minute": LIMIT}]},
    ]
    if redis is not None:
        config["redis"] = {"url": redis.url, "timeout_ms": 500}
    gateway = start_gateway(tmp_path_factory.mktemp(f"iso-{request.param}"), config)
    yield gateway
    gateway.proc.stop()
    backend.proc.stop()
    if redis is not None:
        redis.stop()


def _post(gw: Any, path: str, token: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gw.url + path, json=body, timeout=10, headers={"authorization": f"Bearer {token}"})


@pytest.mark.parametrize("sub", ["alice", None])
def test_cache_entries_are_per_issuer(gw: Any, sub: str | None) -> None:
    body = {"model": "fake-model", "prompt": f"isolation {sub} {time.time()}", "max_tokens": 3}
    first = _post(gw, "/v1/completions", _token("test", sub), body)
    assert first.status_code == 200 and first.headers["x-edgegw-cache"] == "MISS"
    again = _post(gw, "/v1/completions", _token("test", sub), body)
    assert again.headers["x-edgegw-cache"] == "HIT"  # the cache works for the same caller
    other = _post(gw, "/v1/completions", _token("other", sub), body)
    assert other.status_code == 200 and other.headers["x-edgegw-cache"] == "MISS", "cross-issuer cache hit"
    assert _post(gw, "/v1/completions", _token("other", sub), body).headers["x-edgegw-cache"] == "HIT"


@pytest.mark.parametrize("sub", ["alice", None])
def test_rate_limit_buckets_are_per_issuer(gw: Any, sub: str | None) -> None:
    chat = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    who = sub or f"anon-{gw.port}"
    statuses = [_post(gw, "/v1/chat/completions", _token("test", sub), chat).status_code for _ in range(LIMIT + 1)]
    assert statuses == [200] * LIMIT + [429], (who, statuses)
    # The other issuer's caller of the same name (or also without one) has its own, untouched bucket.
    statuses = [_post(gw, "/v1/chat/completions", _token("other", sub), chat).status_code for _ in range(LIMIT + 1)]
    assert statuses == [200] * LIMIT + [429], (who, statuses)


def test_tenant_buckets_are_per_issuer(gw: Any) -> None:
    body = {"model": "fake-model", "input": "hi"}
    for issuer in ("test", "other"):
        statuses = [_post(gw, "/v1/embeddings", _token(issuer, f"u{i}", tenant="acme"), body).status_code
                    for i in range(LIMIT + 1)]
        assert statuses == [200] * LIMIT + [429], (issuer, statuses)
