"""Model entries and fallbacks in the policy: what loads, and what `check-config` refuses."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import ConfigError
from gateway.config.models import TRIGGERS
from gateway.features import load_config
from testkit.harness import EDGEGW, ROOT

ISSUERS = [{"name": "t", "issuer": "https://t", "algorithms": ["HS256"], "secret_env": "EDGEGW_TEST_SECRET"}]


def _policy(pools: list[dict[str, Any]], routes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    for p in pools:
        p.setdefault("endpoints", [{"url": "http://127.0.0.1:1"}])
    return {"admin": {"issuer": "t"}, "issuers": ISSUERS, "pools": pools,
            "routes": routes or [{"name": "r", "paths": ["/v1/chat/completions"]}]}


def _load(tmp_path: Path, data: dict[str, Any]) -> Any:
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


def _refused(tmp_path: Path, data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, data)
    return info.value


def test_plain_and_mapping_entries_load(tmp_path: Path) -> None:
    cfg = _load(tmp_path, _policy([
        {"name": "a", "models": ["plain", "glob-*", {"name": "phone", "backend_name": "Phone-9B",
                                                     "context_length": 4096,
                                                     "fallbacks": [{"model": "phone", "pool": "b"}]}]},
        {"name": "b", "models": ["phone"]}]))
    a = cfg.pools[0]
    assert a.models == ("plain", "glob-*", "phone")
    spec = a.model_specs[0]
    assert (spec.name, spec.backend_name, spec.context_length, spec.max_token_bytes) == ("phone", "Phone-9B", 4096, 128)
    assert spec.fallbacks[0].pool == "b" and spec.fallbacks[0].on == frozenset(TRIGGERS)


def test_cycles_are_refused(tmp_path: Path) -> None:
    err = _refused(tmp_path, _policy([
        {"name": "a", "models": [{"name": "x", "fallbacks": [{"model": "y"}]}]},
        {"name": "b", "models": [{"name": "y", "fallbacks": [{"model": "x", "when": ["overloaded"]}]}]}]))
    assert err.key == "pools[0].models[0].fallbacks" and "cycle: x (a) -> y (b) -> x (a)" in err.problem


def test_a_model_falling_back_to_itself_elsewhere_is_no_cycle(tmp_path: Path) -> None:
    _load(tmp_path, _policy([{"name": "a", "models": [{"name": "x", "fallbacks": [{"model": "x", "pool": "b"}]}]},
                             {"name": "b", "models": ["x"]}]))
    err = _refused(tmp_path, _policy([{"name": "a", "models": [{"name": "x", "fallbacks": [{"model": "x"}]}]}]))
    assert "cycle: x (a) -> x (a)" in err.problem


@pytest.mark.parametrize(("fallback", "key", "problem"), [
    ({"model": "nowhere"}, "pools[0].models[0].fallbacks[0].model", "no pool serves 'nowhere'"),
    ({"model": "y", "pool": "c"}, "pools[0].models[0].fallbacks[0].pool", "no pool named 'c'"),
    ({"model": "x", "pool": "b"}, "pools[0].models[0].fallbacks[0].model", "pool 'b' does not serve 'x'"),
    ({"model": "y-*"}, "pools[0].models[0].fallbacks[0].model", "one model, not a pattern"),
    ({"model": "y", "when": ["sometimes"]}, "pools[0].models[0].fallbacks[0].when", "unknown trigger 'sometimes'"),
    ({"model": "y", "when": []}, "pools[0].models[0].fallbacks[0].when", "at least one trigger"),
])
def test_unknown_or_vague_fallbacks_are_refused(tmp_path: Path, fallback: dict[str, Any], key: str,
                                                problem: str) -> None:
    err = _refused(tmp_path, _policy([{"name": "a", "models": [{"name": "x", "fallbacks": [fallback]}]},
                                      {"name": "b", "models": ["y"]}]))
    assert err.key == key and problem in err.problem


def test_an_on_key_is_explained(tmp_path: Path) -> None:
    data = _policy([{"name": "a", "models": [{"name": "x", "fallbacks": [{"model": "y", True: ["overloaded"]}]}]},
                    {"name": "b", "models": ["y"]}])
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(data).replace("true:", "on:"))  # as an operator would write it
    assert "on: [overloaded]" in path.read_text() or "on:\n" in path.read_text()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "YAML reads an `on:` key as true" in info.value.problem


def test_a_fallback_the_routes_callers_may_not_use_is_refused(tmp_path: Path) -> None:
    pools = [{"name": "a", "models": [{"name": "x", "fallbacks": [{"model": "secret"}]}]},
             {"name": "b", "models": ["secret"]}]
    route = {"name": "r", "paths": ["/v1/chat/completions"], "models": ["x"]}
    err = _refused(tmp_path, _policy(pools, [route]))
    assert err.key == "routes[0].models" and "leads to 'secret'" in err.problem
    err = _refused(tmp_path, _policy([{"name": "a", "models": ["x"]}, {"name": "b", "models": ["secret"]}],
                                     [{**route, "fallbacks": [{"model": "secret"}]}]))
    assert err.key == "routes[0].fallbacks" and "leads to 'secret'" in err.problem
    _load(tmp_path, _policy(pools, [{**route, "models": ["x", "secret"]}]))


def test_check_config_command_refuses_a_cycle(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(_policy([
        {"name": "a", "models": [{"name": "x", "fallbacks": [{"model": "y"}]}]},
        {"name": "b", "models": [{"name": "y", "fallbacks": [{"model": "x"}]}]}])))
    done = subprocess.run([*EDGEGW, "check-config", str(path)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "EDGEGW_TEST_SECRET": "s" * 32}, timeout=60)
    assert done.returncode != 0 and "fallback cycle" in done.stderr and "Traceback" not in done.stderr
