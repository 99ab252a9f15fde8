"""Config validation: an invalid file stops start-up with an error naming file, key and problem."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from gateway.cache.config import route_rule
from gateway.config import ConfigError
from gateway.features import load_config
from gateway.ratelimit.config import route_limits
from testkit.harness import EDGEGW, ROOT

BASE = {
    "admin": {"issuer": "t"},
    "issuers": [{"name": "t", "issuer": "https://t", "algorithms": ["HS256"], "secret_env": "EDGEGW_TEST_SECRET"}],
    "pools": [{"name": "p", "models": ["m"], "endpoints": [{"url": "http://127.0.0.1:1"}]}],
    "routes": [{"name": "r", "paths": ["/v1/completions"]}],
}


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _patched(path: str, value: object) -> dict:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    node = data
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if k.isdigit() else node[k]
    last = keys[-1]
    node[int(last) if last.isdigit() else last] = value
    return data


@pytest.mark.parametrize(("path", "value", "key", "problem"), [
    ("pools.0.endpoints.0.url", "ftp://x", "pools[0].endpoints[0].url", "expected an http(s)://host"),
    ("pools.0.endpoints.0.url", "http://", "pools[0].endpoints[0].url", "expected an http(s)://host"),
    ("pools.0.endpoints.0.url", "http://[::1", "pools[0].endpoints[0].url", "expected an http(s)://host"),
    ("pools.0.endpoints.0.url", "http://x:abc", "pools[0].endpoints[0].url", "expected an http(s)://host"),
    ("pools.0.endpoints.0.url", "http://x:99999", "pools[0].endpoints[0].url", "expected an http(s)://host"),
    ("pools.0.endpoints.0.url", 8000, "pools[0].endpoints[0].url", "expected an http(s) URL, got"),
    ("issuers.0.jwks_url", "file:///etc/jwks.json", "issuers[0].jwks_url", "expected an http(s)://host"),
    ("pools.0.balancer", "random", "pools[0].balancer", "must be one of"),
    ("pools.0.timeouts", {"connect_s": "fast"}, "pools[0].timeouts.connect_s", "expected a number"),
    ("pools.0.max_inflight_per_endpoint", 0, "pools[0].max_inflight_per_endpoint", "at least 1"),
    ("routes.0.pool", "nope", "routes[0].pool", "no pool named 'nope'"),
    ("routes.0.paths", ["v1/x"], "routes[0].paths", "start with '/'"),
    ("routes.0.colour", "blue", "routes[0].colour", "unknown key"),
    ("issuers.0.algorithms", ["HS256", "RS256"], "issuers[0].algorithms", "do not mix"),
    ("issuers.0.algorithms", ["XX1"], "issuers[0].algorithms", "unsupported algorithm"),
    ("issuers.0.secret_env", "EDGEGW_UNSET_VAR", "issuers[0].secret_env", "is not set"),
    ("issuers.0.jwks_file", "missing.json", "issuers[0].jwks_file", "file not found"),
    ("server", {"port": "eighty"}, "server.port", "expected an integer"),
    ("routes", [{"paths": ["/v1/completions"]}], "routes[0].name", "is required"),
])
def test_invalid_config_names_file_and_key(tmp_path: Path, path: str, value: object, key: str,
                                           problem: str) -> None:
    file = _write(tmp_path, _patched(path, value))
    with pytest.raises(ConfigError) as info:
        load_config(file)
    assert info.value.file == str(file)
    assert info.value.key == key
    assert problem in info.value.problem


def test_plugin_upstream_must_be_an_http_url(tmp_path: Path) -> None:
    data = _patched("routes.0.name", "r")
    data["plugins"] = [{"name": "authz", "upstreams": {"idp": "tcp://10.0.0.1:9000"}}]
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, data))
    assert info.value.key == "plugins[0].upstreams.idp"
    assert "expected an http(s)://host" in info.value.problem


def test_an_empty_optional_url_is_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEGW_TEST_SECRET", "x" * 32)
    cfg = load_config(_write(tmp_path, _patched("issuers.0.jwks_url", "")))
    assert cfg.issuers[0].jwks_url is None


def test_env_substitution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEGW_BACKEND_URL", "http://10.0.0.7:9000")
    data = _patched("pools.0.endpoints.0.url", "${EDGEGW_BACKEND_URL}")
    data["server"] = {"port": "${EDGEGW_PORT:-9999}"}
    text = yaml.safe_dump(data).replace("'${EDGEGW_PORT:-9999}'", "${EDGEGW_PORT:-9999}")
    file = tmp_path / "gw.yaml"
    file.write_text(text)
    cfg = load_config(file)
    assert cfg.pools[0].endpoints[0].url == "http://10.0.0.7:9000"
    assert cfg.server.port == 9999
    file.write_text(text.replace("EDGEGW_BACKEND_URL", "EDGEGW_NOT_SET_ANYWHERE"))
    with pytest.raises(ConfigError, match="EDGEGW_NOT_SET_ANYWHERE is not set"):
        load_config(file)


def test_check_config_cli(tmp_path: Path) -> None:
    good = subprocess.run([*EDGEGW, "check-config", str(_write(tmp_path, BASE))], capture_output=True,
                          text=True, cwd=ROOT)
    assert good.returncode == 0 and "ok (1 issuers, 1 pools, 1 routes" in good.stdout
    bad = subprocess.run([*EDGEGW, "check-config", str(_write(tmp_path, _patched("routes.0.pool", "x")))],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2
    assert "gw.yaml: routes[0].pool: no pool named 'x'" in bad.stderr and "Traceback" not in bad.stderr
    serve = subprocess.run([*EDGEGW, "serve", "--config", str(tmp_path / "absent.yaml")], capture_output=True,
                           text=True, cwd=ROOT, timeout=30)
    assert serve.returncode == 2 and "cannot read" in serve.stderr


def test_shipped_policy_is_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shipped policy loads to what its comments promise: the demo issuer with its secret from the
    environment, the two-replica local pool (addresses overridable by ${VAR:-default}), and the one
    inference route bound to it with the partner limit and the deterministic cache."""
    for var in ("EDGEGW_BACKEND_1", "EDGEGW_BACKEND_2", "EDGEGW_HOST", "EDGEGW_PORT", "EDGEGW_PLUGIN_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("EDGEGW_DEMO_SECRET", "x" * 40)
    cfg = load_config(ROOT / "policies" / "gateway.yaml")
    assert (cfg.server.host, cfg.server.port, cfg.server.workers) == ("127.0.0.1", 8080, 1)
    assert [i.name for i in cfg.issuers] == ["demo"] and cfg.admin.issuer == "demo"
    demo = cfg.issuers[0]
    assert demo.algorithms == ("HS256",) and demo.secret == "x" * 40 and demo.audience == "edgegw"
    [pool] = cfg.pools
    assert pool.name == "local" and pool.embedding_models == ("all-minilm-l6-v2",)
    assert "smollm2" in pool.models and "all-minilm-l6-v2" in pool.models
    assert [e.url for e in pool.endpoints] == ["http://127.0.0.1:9101", "http://127.0.0.1:9102"]
    [route] = cfg.routes
    assert route.pool == "local" and route.auth == "jwt" and route.default_model == "smollm2"
    assert set(route.paths) == {"/v1/chat/completions", "/v1/completions", "/v1/generate", "/v1/embeddings"}
    [limit] = route_limits(route)
    assert limit.name == "partner" and limit.key == ("subject",) and set(limit.tiers) == {"gold"}
    rule = route_rule(route)
    assert rule is not None and (rule.ttl_s, rule.when) == (300, "deterministic")

    monkeypatch.setenv("EDGEGW_BACKEND_1", "http://10.0.0.7:8000")
    moved = load_config(ROOT / "policies" / "gateway.yaml")
    assert [e.url for e in moved.pools[0].endpoints] == ["http://10.0.0.7:8000", "http://127.0.0.1:9102"]
    monkeypatch.delenv("EDGEGW_DEMO_SECRET")
    with pytest.raises(ConfigError, match="EDGEGW_DEMO_SECRET"):
        load_config(ROOT / "policies" / "gateway.yaml")
