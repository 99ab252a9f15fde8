"""Real gateway and fake-backend processes on loopback, configured per test or benchmark: what
tests/conftest.py's fixtures and the benchmarks start."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import httpx
import yaml

from testkit.harness import EDGEGW, Proc, free_port, start_server

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
