"""Shared fixtures: real gateway and fake-backend processes on loopback, configured per test."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from testkit.harness import EDGEGW, Proc, RedisServer, free_port, start_server

DEMO_SECRET = "test-secret-0123456789-abcdefghijklmnop"
os.environ.setdefault("EDGEGW_TEST_SECRET", DEMO_SECRET)


class FakeBackendProc:
    def __init__(self, proc: Proc, port: int) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def stats(self) -> dict[str, Any]:
        return httpx.get(self.url + "/_stats", timeout=5).json()

    def control(self, **kwargs: Any) -> None:
        httpx.post(self.url + "/_control", json=kwargs, timeout=5).raise_for_status()


def start_fake_backend(name: str = "fake", models: str = "fake-model", port: int | None = None,
                       token_delay: float = 0.0) -> FakeBackendProc:
    port = port or free_port()
    proc = start_server([sys.executable, "-m", "testkit.fakes.backend", "--port", str(port), "--name", name,
                         "--models", models, "--token-delay", str(token_delay)],
                        f"http://127.0.0.1:{port}/healthz", name=f"fake-{name}")
    return FakeBackendProc(proc, port)


class GatewayProc:
    def __init__(self, proc: Proc, port: int, config_path: Path, config: dict[str, Any]) -> None:
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.config_path = config_path
        self.config = config

    def token(self, sub: str = "alice", issuer: str = "test", **kwargs: Any) -> str:
        from gateway.auth.mint import mint_token
        from gateway.features import load_config

        cfg = load_config(self.config_path).issuer(issuer)
        assert cfg is not None
        return mint_token(cfg, sub, **kwargs)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a Prometheus sample's values matching the labels (0 when absent)."""
        total = 0.0
        for line in httpx.get(self.url + "/metrics", timeout=5).text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total


def issuer_config(**overrides: Any) -> dict[str, Any]:
    return {"name": "test", "issuer": "https://idp.test", "algorithms": ["HS256"],
            "secret_env": "EDGEGW_TEST_SECRET", "audience": "edgegw", **overrides}


def gateway_config(backends: list[FakeBackendProc], **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "server": {"access_log": "stdout"},
        "admin": {"issuer": "test"},
        "issuers": [issuer_config()],
        "pools": [{"name": "default", "models": ["fake-model"],
                   "endpoints": [{"url": b.url} for b in backends],
                   "health": {"interval_s": 0.2, "timeout_s": 0.5},
                   "outlier": {"consecutive_failures": 2, "base_ejection_s": 0.5}}],
        "routes": [{"name": "inference",
                    "paths": ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/generate"]}],
    }
    config.update(overrides)
    return config


def start_gateway(tmp_path: Path, config: dict[str, Any], env: dict[str, str] | None = None,
                  workers: int = 1) -> GatewayProc:
    port = free_port()
    path = tmp_path / f"gateway-{port}.yaml"
    path.write_text(yaml.safe_dump(config))
    args = [*EDGEGW, "serve", "--config", str(path), "--port", str(port), "--workers", str(workers)]
    proc = start_server(args, f"http://127.0.0.1:{port}/healthz", name="gateway", env=env)
    return GatewayProc(proc, port, path, config)


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
