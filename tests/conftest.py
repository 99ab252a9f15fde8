"""Shared fixtures: real gateway and fake-backend processes on loopback, configured per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testkit.gateways import (  # noqa: F401 - the tests import these from here
    DEMO_SECRET,
    FakeBackendProc,
    GatewayProc,
    gateway_config,
    issuer_config,
    start_fake_backend,
    start_gateway,
)
from testkit.harness import RedisServer


@pytest.fixture
def fake_backend() -> Iterator[FakeBackendProc]:
    backend = start_fake_backend()
    yield backend
    backend.proc.stop()


@pytest.fixture
def make_backend() -> Iterator[Any]:
    started: list[FakeBackendProc] = []

    def make(**kwargs: Any) -> FakeBackendProc:
        b = start_fake_backend(**kwargs)
        started.append(b)
        return b

    yield make
    for b in started:
        b.proc.stop()


@pytest.fixture
def make_gateway(tmp_path: Path) -> Iterator[Any]:
    started: list[GatewayProc] = []

    def make(config: dict[str, Any], **kwargs: Any) -> GatewayProc:
        gw = start_gateway(tmp_path, config, **kwargs)
        started.append(gw)
        return gw

    yield make
    for gw in started:
        gw.proc.stop()


def media_config(backend: object) -> dict:
    """A gateway config with a text-only pool (fake-model) and a multimodal one (vision-model takes
    images and audio, eye-model images only) on one fake backend; a cached route with media limits."""
    config = gateway_config([backend])  # type: ignore[list-item]
    url = config["pools"][0]["endpoints"][0]["url"]
    config["server"]["max_body_bytes"] = 65536
    config["pools"].append({"name": "vision", "models": ["vision-model", "eye-model"],
                            "image_models": ["vision-model", "eye-*"], "audio_models": ["vision-model"],
                            "endpoints": [{"url": url}], "health": {"interval_s": 0.2, "timeout_s": 0.5}})
    route = config["routes"][0]
    route["cache"] = {"ttl_s": 60}
    route["media"] = {"max_bytes": 300_000, "max_parts": 3, "mime_types": ["image/png", "image/jpeg", "audio/wav"]}
    return config


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server for the module's tests."""
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(params=["memory", "redis"])
def store(request: Any, redis_server: RedisServer) -> RedisServer | None:
    """Run a test against the embedded in-memory stores (None) and against Redis (emptied first)."""
    if request.param == "memory":
        return None
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()
    return redis_server


def with_redis(config: dict[str, Any], redis: RedisServer | None, **options: Any) -> dict[str, Any]:
    """`config` using `redis` for limits and the cache (unchanged when it is None: in-memory stores)."""
    if redis is not None:
        config["redis"] = {"url": redis.url, "timeout_ms": 1000, **options}
    return config


@pytest.fixture(scope="module")
def media_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    """A gateway with the media route and pools of `media_config`, in front of one fake backend
    (as `.backend`) that answers what it decoded of each media part."""
    backend = start_fake_backend()
    gateway = start_gateway(tmp_path_factory.mktemp("media"), media_config(backend))
    gateway.backend = backend  # type: ignore[attr-defined]
    yield gateway
    gateway.proc.stop()
    backend.proc.stop()
