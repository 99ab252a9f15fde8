"""The in-process cache store's size and eviction (`memory_cache:`), in the store and through a gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.cache.store import MemoryCacheStore
from gateway.config import ConfigError
from gateway.features import load_config
from tests.conftest import gateway_config


def _fill(store: MemoryCacheStore, *keys: str, size: int = 10) -> None:
    for key in keys:
        store.try_put(key, b"x" * size, 60_000, None)


@pytest.mark.parametrize(("eviction", "kept"), [("lru", {"a", "c"}), ("fifo", {"b", "c"})])
def test_eviction_by_entries(eviction: str, kept: set[str]) -> None:
    store = MemoryCacheStore(max_total_bytes=1 << 20, max_entries=2, eviction=eviction)
    _fill(store, "a", "b")
    assert store.try_lookup("a", "t", 1000)[0] is not None  # a read: LRU keeps "a", FIFO does not care
    _fill(store, "c")
    assert set(store.entries) == kept and store.evictions == 1


def test_eviction_by_bytes_keeps_the_total_under_the_budget() -> None:
    store = MemoryCacheStore(max_total_bytes=100, max_entries=1000)
    _fill(store, *"abcdefgh", size=30)
    assert store.total <= 100 and list(store.entries) == ["f", "g", "h"][-len(store.entries):]
    assert store.evictions == 8 - len(store.entries)


def _policy(tmp_path: Path, memory_cache: Any) -> Path:
    data = {"issuers": [{"name": "t", "issuer": "https://t", "algorithms": ["HS256"],
                         "secret_env": "EDGEGW_TEST_SECRET"}],
            "pools": [{"name": "p", "models": ["m"], "endpoints": [{"url": "http://127.0.0.1:1"}]}],
            "routes": [{"name": "r", "paths": ["/v1/completions"]}],
            "memory_cache": memory_cache, "admin": {"issuer": "t"}}
    (path := tmp_path / "gw.yaml").write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("section", "key", "problem"), [
    ({"eviction": "random"}, "memory_cache.eviction", "must be one of"),
    ({"max_entries": 0}, "memory_cache.max_entries", "at least 1"),
    ({"max_bytes": 10}, "memory_cache.max_bytes", "at least"),
    ({"size": 10}, "memory_cache.size", "unknown key"),
])
def test_bad_memory_cache_settings_name_the_key(tmp_path: Path, section: dict, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(_policy(tmp_path, section))
    assert exc.value.key == key and problem in exc.value.problem


def test_a_gateway_evicts_beyond_max_entries(fake_backend: Any, make_gateway: Any) -> None:
    config = gateway_config([fake_backend], memory_cache={"max_entries": 1, "eviction": "lru"})
    config["routes"][0]["cache"] = {"ttl_s": 60}
    gw = make_gateway(config)
    auth = {"authorization": f"Bearer {gw.token()}"}

    def status(prompt: str) -> str:
        body = {"model": "fake-model", "prompt": prompt, "max_tokens": 2, "temperature": 0}
        resp = httpx.post(gw.url + "/v1/completions", json=body, headers=auth, timeout=10)
        assert resp.status_code == 200
        return resp.headers["x-edgegw-cache"]

    assert [status("one"), status("one")] == ["MISS", "HIT"]
    assert status("two") == "MISS"  # the only slot now holds "two"
    assert [status("one"), status("two")] == ["MISS", "MISS"]  # "one" was evicted, then it evicted "two"
