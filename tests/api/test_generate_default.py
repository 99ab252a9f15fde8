"""`/v1/generate {"prompt", "max_tokens"}`: the model defaults to a generation model, never an embedding one.

A real backend serves a generation model (the tiny Llama) and an embedding model (all-MiniLM-L6-v2)
in one pool, as the shipped policies do.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.config import ConfigError
from gateway.features import load_config
from gateway.ingress.routing import RouteTable
from testkit.harness import EDGEGW, ROOT
from tests.backend.conftest import OFFLINE, BackendProc, start_backend
from tests.conftest import GatewayProc, gateway_config, start_gateway

EMBEDDER = "all-minilm-l6-v2"
SHIPPED = ["policies/gateway.yaml", "deploy/compose/gateway.yaml", "docs/examples/full-policy.yaml"]


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProc]:
    model = tmp_path_factory.mktemp("generate") / "tiny"
    done = subprocess.run([*EDGEGW, "make-tiny-model", str(model)], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, **OFFLINE})
    assert done.returncode == 0, done.stderr
    proc = start_backend(model, "--embedding-model", "default", name="generate-backend")
    yield proc
    proc.stop()


def _gateway(tmp_path: Path, backend: BackendProc, served: dict[str, Any], **route: Any) -> GatewayProc:
    config = gateway_config([])
    config["pools"][0].update(endpoints=[{"url": backend.url}], **served)
    config["routes"][0].update(route)
    return start_gateway(tmp_path, config)


def _post(gw: GatewayProc, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gw.url + path, json=body, headers={"authorization": f"Bearer {gw.token()}"}, timeout=60)


def test_generate_without_model_uses_the_first_generation_model(tmp_path: Path, backend: BackendProc) -> None:
    # The embedding model is listed first (and sorts first): it must still never be the default.
    gw = _gateway(tmp_path, backend, {"models": [EMBEDDER, "tiny"], "embedding_models": [EMBEDDER]})
    try:
        resp = _post(gw, "/v1/generate", {"prompt": "The capital of France is", "max_tokens": 6, "temperature": 0})
        assert resp.status_code == 200, resp.text
        answer = resp.json()
        assert answer["model"] == "tiny" and answer["finish_reason"] in ("stop", "length")
        plain = _post(gw, "/v1/completions", {"model": "tiny", "prompt": "The capital of France is",
                                              "max_tokens": 6, "temperature": 0}).json()
        # The completion text alone: no prompt echoed, nothing added.
        assert answer["generated_text"] == plain["choices"][0]["text"]
        assert answer["usage"]["completion_tokens"] == plain["usage"]["completion_tokens"]
        # The embedding model still answers embeddings through the same route.
        emb = _post(gw, "/v1/embeddings", {"model": EMBEDDER, "input": "hello"})
        assert emb.status_code == 200 and len(emb.json()["data"][0]["embedding"]) == 384
    finally:
        gw.proc.stop()


def test_generate_uses_the_routes_default_model(tmp_path: Path, backend: BackendProc) -> None:
    gw = _gateway(tmp_path, backend, {"models": ["other", "tiny"], "embedding_models": [EMBEDDER]},
                  pool="default", default_model="tiny")
    try:
        resp = _post(gw, "/v1/generate", {"prompt": "hi", "max_tokens": 3})
        assert resp.status_code == 200 and resp.json()["model"] == "tiny", resp.text
        named = _post(gw, "/v1/generate", {"prompt": "hi", "max_tokens": 3, "model": "tiny"})
        assert named.status_code == 200 and named.json()["model"] == "tiny"
    finally:
        gw.proc.stop()


def test_generate_on_a_route_with_only_embedding_models_asks_for_a_model(tmp_path: Path,
                                                                          backend: BackendProc) -> None:
    gw = _gateway(tmp_path, backend, {"models": [], "embedding_models": [EMBEDDER]})
    try:
        resp = _post(gw, "/v1/generate", {"prompt": "hi", "max_tokens": 3})
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert error["param"] == "model" and "no default generation model" in error["message"]
    finally:
        gw.proc.stop()


def _policy(tmp_path: Path, pool: dict[str, Any], route: dict[str, Any]) -> Path:
    data = {"issuers": [{"name": "t", "issuer": "https://t", "algorithms": ["HS256"],
                         "secret_env": "EDGEGW_TEST_SECRET"}],
            "pools": [{"name": "p", "endpoints": [{"url": "http://127.0.0.1:1"}], **pool}],
            "routes": [{"name": "r", "paths": ["/v1/generate"], **route}],
            "admin": {"issuer": "t"}}
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(("model", "why"), [
    (EMBEDDER, "is not a generation model this route reaches (reachable: smollm2)"),
    ("missing", "is not a generation model this route reaches (reachable: smollm2)"),
])
def test_check_config_refuses_a_default_model_the_route_cannot_generate_with(tmp_path: Path, model: str,
                                                                             why: str) -> None:
    path = _policy(tmp_path, {"models": ["smollm2"], "embedding_models": [EMBEDDER]}, {"default_model": model})
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.key == "routes[0].default_model" and why in exc.value.problem
    assert str(path) in str(exc.value)
    done = subprocess.run([*EDGEGW, "check-config", str(path)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2 and "routes[0].default_model" in done.stderr


def test_a_default_model_may_match_a_pool_pattern(tmp_path: Path) -> None:
    cfg = load_config(_policy(tmp_path, {"models": ["llama-*"]}, {"default_model": "llama-3-8b"}))
    assert RouteTable(cfg).default_model(cfg.routes[0]) == "llama-3-8b"


@pytest.mark.parametrize("policy", SHIPPED)
def test_every_shipped_policy_generates_with_a_generation_model(policy: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway import docgen

    monkeypatch.setenv("EDGEGW_DEMO_SECRET", "x" * 32)
    with docgen.example_env():
        cfg = load_config(ROOT / policy)
    table = RouteTable(cfg)
    generating = [r for r in cfg.routes if "/v1/generate" in r.paths]
    assert generating, f"{policy} has no /v1/generate route"
    for route in generating:
        model = table.default_model(route)
        assert model is not None, f"{policy}: route {route.name} has no default model for /v1/generate"
        assert all(model not in p.embedding_models for p in cfg.pools)


def test_k8s_policy_generates_with_a_generation_model(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("EDGEGW_DEMO_SECRET", "x" * 32)
    monkeypatch.setenv("EDGEGW_REDIS_URL", "redis://redis:6379/0")
    configmap = yaml.safe_load((ROOT / "deploy/k8s/configmap.yaml").read_text())
    (policy := tmp_path / "gateway.yaml").write_text(configmap["data"]["gateway.yaml"])
    cfg = load_config(policy)
    assert RouteTable(cfg).default_model(cfg.routes[0]) == "smollm2"


def test_the_backend_reports_ready_at_info(backend: BackendProc) -> None:
    ready = [line for line in backend.proc.log().splitlines() if "backend ready" in line]
    assert ready and all(" INFO " in line for line in ready), backend.proc.log()[-2000:]
