"""Bad rate-limit, cache and redis config is rejected at start-up, naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.cache.config import route_rule
from gateway.config import ConfigError
from gateway.features import load_config
from gateway.ratelimit.config import LimitConfig, route_limits
from gateway.redis.config import RedisConfig, redis_config

BASE = {
    "admin": {"issuer": "t"},
    "issuers": [{"name": "t", "issuer": "https://t", "algorithms": ["HS256"], "secret_env": "EDGEGW_TEST_SECRET"}],
    "pools": [{"name": "p", "models": ["m"], "endpoints": [{"url": "http://127.0.0.1:1"}]}],
    "routes": [{"name": "r", "paths": ["/v1/completions"]}],
}
LIMIT = {"name": "l", "key": "subject", "requests_per_minute": 10}


def _load(tmp_path: Path, route: dict | None = None, top: dict | None = None) -> object:
    data = yaml.safe_load(yaml.safe_dump(BASE))
    data["routes"][0].update(route or {})
    data.update(top or {})
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


@pytest.mark.parametrize(("route", "top", "key", "problem"), [
    ({"rate_limits": [{**LIMIT, "key": "nickname"}]}, None, "routes[0].rate_limits[0].key", "unknown key part"),
    ({"rate_limits": [{"name": "l"}]}, None, "routes[0].rate_limits[0].requests_per_minute", "needs at least one"),
    ({"rate_limits": [{**LIMIT, "requests_per_minute": "ten"}]}, None,
     "routes[0].rate_limits[0].requests_per_minute", "expected an integer"),
    ({"rate_limits": [{**LIMIT, "on_redis_error": "panic"}]}, None, "routes[0].rate_limits[0].on_redis_error",
     "must be one of"),
    ({"rate_limits": [{**LIMIT, "per_fortnight": 3}]}, None, "routes[0].rate_limits[0].per_fortnight",
     "unknown key"),
    ({"rate_limits": [{**LIMIT, "tiers": {"gold": {"requests_per_minut": 5}}}]}, None,
     "routes[0].rate_limits[0].tiers.gold.requests_per_minut", "unknown key"),
    ({"rate_limits": [{**LIMIT, "concurrent": 0}]}, None, "routes[0].rate_limits[0].concurrent", "at least 1"),
    ({"rate_limits": [LIMIT, LIMIT]}, None, "routes[0].rate_limits[1].name", "duplicate"),
    ({"cache": {"ttl_s": 0}}, None, "routes[0].cache.ttl_s", "at least"),
    ({"cache": {"when": "sometimes"}}, None, "routes[0].cache.when", "must be one of"),
    ({"cache": {"wait_s": 60, "lock_s": 10}}, None, "routes[0].cache.wait_s", "must not exceed"),
    ({"cache": {"tll_s": 5}}, None, "routes[0].cache.tll_s", "unknown key"),
    (None, {"redis": {"url": "http://localhost:6379"}}, "redis.url", "expected redis://"),
    (None, {"redis": {"timeout_ms": 50}}, "redis.url", "is required"),
    (None, {"redis": {"url": "redis://x", "timeout_ms": 0}}, "redis.timeout_ms", "at least 1"),
    (None, {"redis": {"url": "redis://x", "key_prefix": "a{b}"}}, "redis.key_prefix", "braces"),
    (None, {"redis": {"url": "redis://x", "clutser": True}}, "redis.clutser", "unknown key"),
])
def test_bad_config_names_file_and_key(tmp_path: Path, route: dict | None, top: dict | None, key: str,
                                       problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, route, top)
    assert info.value.file == str(tmp_path / "gw.yaml")
    assert info.value.key == key
    assert problem in info.value.problem


def test_good_config(tmp_path: Path) -> None:
    cfg = _load(tmp_path, {"rate_limits": [{**LIMIT, "key": ["tenant", "model"], "tokens_per_minute": 1000,
                                            "tiers": {"gold": {"requests_per_minute": 100,
                                                               "tokens_per_minute": "unlimited"}}}],
                           "cache": {"ttl_s": 30, "when": "always"}},
                {"redis": {"url": "rediss://:pw@redis.example:6380/0", "cluster": True}})
    limit = route_limits(cfg.routes[0])[0]
    assert isinstance(limit, LimitConfig) and limit.key == ("tenant", "model")
    assert {q.label: q.limit for q in limit.quotas_for("default")} == {"requests_per_minute": 10,
                                                                      "tokens_per_minute": 1000}
    assert {q.label: q.limit for q in limit.quotas_for("gold")} == {"requests_per_minute": 100}
    redis, rule = redis_config(cfg), route_rule(cfg.routes[0])
    assert isinstance(redis, RedisConfig) and redis.cluster
    assert rule is not None and rule.ttl_s == 30
