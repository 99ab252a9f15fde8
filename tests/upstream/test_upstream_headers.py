"""Per-pool upstream credentials (`api_key_env`, `headers`): sent to the pool's endpoints, never logged,
and never mixed with the client's own credentials, which are not forwarded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.config import ConfigError
from gateway.features import load_config
from tests.conftest import gateway_config

UPSTREAM_KEY = "upstream-key-5f1c0de9a7"


def _call(gw: Any, **headers: str) -> httpx.Response:
    jwt = gw.token()
    resp = httpx.post(gw.url + "/v1/completions", timeout=10,
                      headers={"authorization": f"Bearer {jwt}", "x-api-key": "client-key", **headers},
                      json={"model": "fake-model", "prompt": "hi", "max_tokens": 2})
    assert resp.status_code == 200, resp.text
    return resp


def test_a_pool_sends_its_own_credentials_and_never_the_clients(make_backend: Any, make_gateway: Any,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEGW_TEST_UPSTREAM_KEY", UPSTREAM_KEY)  # the test mints tokens from the same file
    backend = make_backend()
    config = gateway_config([backend])
    config["pools"][0].update(api_key_env="EDGEGW_TEST_UPSTREAM_KEY", headers={"X-Team": "inference"})
    gw = make_gateway(config, env={"EDGEGW_TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    _call(gw, cookie="session=1")
    seen = backend.stats()["last_headers"]
    assert seen["authorization"] == f"Bearer {UPSTREAM_KEY}" and seen["x-team"] == "inference"
    assert "x-api-key" not in seen and "cookie" not in seen
    # Never logged or shown: not in the gateway's output, nor on its admin pages.
    admin = {"authorization": f"Bearer {gw.token('ops', scopes=['admin'])}"}
    pages = [httpx.get(gw.url + p, headers=admin, timeout=10).text for p in ("/admin/pools", "/admin/status.json")]
    assert all(UPSTREAM_KEY not in text for text in [gw.proc.log(), *pages])


def test_without_pool_credentials_no_authorization_is_forwarded(make_backend: Any, make_gateway: Any) -> None:
    backend = make_backend()
    gw = make_gateway(gateway_config([backend]))
    _call(gw, **{"proxy-authorization": "Basic eA=="})
    seen = backend.stats()["last_headers"]
    assert not {"authorization", "x-api-key", "proxy-authorization"} & set(seen)
    assert seen["x-request-id"] and seen["content-type"] == "application/json"


def _policy(tmp_path: Path, **pool: Any) -> Path:
    data = {"issuers": [{"name": "t", "issuer": "https://t", "algorithms": ["HS256"],
                         "secret_env": "EDGEGW_TEST_SECRET"}],
            "pools": [{"name": "p", "models": ["m"], "endpoints": [{"url": "http://127.0.0.1:1"}], **pool}],
            "routes": [{"name": "r", "paths": ["/v1/completions"]}], "admin": {"issuer": "t"}}
    (path := tmp_path / "gw.yaml").write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("pool", "key", "problem"), [
    ({"api_key_env": "EDGEGW_TEST_NOT_SET"}, "pools[0].api_key_env", "EDGEGW_TEST_NOT_SET is not set"),
    ({"headers": {"Host": "x"}}, "pools[0].headers.Host", "set by the gateway"),
    ({"headers": {"x-request-id": "x"}}, "pools[0].headers.x-request-id", "set by the gateway"),
    ({"headers": {"bad header": "x"}}, "pools[0].headers.bad header", "not a valid header name"),
    ({"headers": {"x-a": "1\r\nx-b: 2"}}, "pools[0].headers.x-a", "line breaks"),
    ({"api_key_env": "EDGEGW_TEST_SECRET", "headers": {"Authorization": "Basic x"}},
     "pools[0].headers.Authorization", "api_key_env already sets authorization"),
])
def test_bad_upstream_headers_name_the_key(tmp_path: Path, pool: dict, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(_policy(tmp_path, **pool))
    assert exc.value.key == key and problem in exc.value.problem


def test_the_key_is_not_in_the_configs_repr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEGW_TEST_UPSTREAM_KEY", UPSTREAM_KEY)
    cfg = load_config(_policy(tmp_path, api_key_env="EDGEGW_TEST_UPSTREAM_KEY"))
    assert cfg.pools[0].upstream_headers == (("authorization", f"Bearer {UPSTREAM_KEY}"),)
    assert UPSTREAM_KEY not in repr(cfg)
