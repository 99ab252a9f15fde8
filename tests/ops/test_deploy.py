"""Deployment files, checked without a cluster or a Docker engine: Kubernetes manifests against the
Kubernetes schemas (kubernetes-validate ships them: no network), and everything against each other
(ConfigMap policy vs Services, compose services vs the compose policy, both vs the Dockerfile)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from gateway.config.schema import GatewayConfig
from gateway.features import load_config
from gateway.redis.config import redis_config
from gateway.upstream.config import pool_options
from testkit.harness import ROOT

K8S = ROOT / "deploy" / "k8s"
K8S_VERSION = "1.33.0"  # the oldest release we claim: native preStop `sleep` needs >= 1.30
ENV = {"EDGEGW_DEMO_SECRET": "x" * 40, "EDGEGW_REDIS_URL": "redis://edgegw-redis:6379/0"}


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _manifests() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, d) for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml"
            for d in _docs(p)]


def _find(kind: str, name: str) -> dict[str, Any]:
    found = [d for _, d in _manifests() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _policy(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            env: dict[str, str | None] | None = None) -> GatewayConfig:
    """Load a policy with `env` set (None: unset, so `${VAR:-default}` defaults apply)."""
    for k, v in (env or ENV).items():
        if v is None:
            monkeypatch.delenv(k, raising=False)
        else:
            monkeypatch.setenv(k, v)
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return load_config(path)


@pytest.mark.parametrize("name,doc", _manifests(), ids=lambda v: v if isinstance(v, str) else "")
def test_manifest_matches_kubernetes_schema(name: str, doc: dict[str, Any]) -> None:
    # strict: an unknown field (a typo) is an error, as `kubectl apply --validate=strict` would say
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert doc["metadata"].get("namespace", "edgegw") == "edgegw"


def test_kustomization_lists_every_manifest() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == present


def _pod(deploy: dict[str, Any]) -> dict[str, Any]:
    spec = deploy["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    return spec["template"]["spec"]


def test_k8s_pieces_fit_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gateway, backend = _find("Deployment", "edgegw-gateway"), _find("Deployment", "edgegw-backend")
    gw_pod, be_pod = _pod(gateway), _pod(backend)
    # The backend asks for a GPU and is published by a headless Service selecting its pods.
    (be,) = be_pod["containers"]
    assert be["resources"]["limits"]["nvidia.com/gpu"] == "1"
    headless = _find("Service", "edgegw-backend")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"].items() <= backend["spec"]["template"]["metadata"]["labels"].items()
    be_port = be["ports"][0]["containerPort"]
    assert str(be_port) in be["args"] and headless["spec"]["ports"][0]["port"] == be_port
    # The gateway's policy comes from the ConfigMap and discovers that Service by DNS.
    (gw,) = gw_pod["containers"]
    config_arg = gw["args"][gw["args"].index("--config") + 1]
    mount = next(m for m in gw["volumeMounts"] if config_arg.startswith(m["mountPath"] + "/"))
    volume = next(v for v in gw_pod["volumes"] if v["name"] == mount["name"])
    cm = _find("ConfigMap", volume["configMap"]["name"])
    policy = _policy(cm["data"][Path(config_arg).name], tmp_path, monkeypatch)
    (pool,) = policy.pools
    dns = pool_options(pool).dns
    assert dns is not None and dns.name == "edgegw-backend.edgegw.svc.cluster.local" and dns.port == be_port
    assert redis_config(policy) is not None
    env = {e["name"] for e in gw["env"]}
    assert {"EDGEGW_DEMO_SECRET", "EDGEGW_REDIS_URL"} <= env
    secret = _find("Secret", "edgegw-secrets")
    redis_host = urlsplit(secret["stringData"]["redis-url"]).hostname
    assert redis_host == _find("Service", "edgegw-redis")["metadata"]["name"]
    # The gateway Service, probes and autoscaler point at the gateway.
    svc = _find("Service", "edgegw-gateway")
    assert svc["spec"]["selector"].items() <= gateway["spec"]["template"]["metadata"]["labels"].items()
    assert str(policy.server.port) in gw["args"]
    assert gw["readinessProbe"]["httpGet"]["path"] == "/readyz"
    hpa = _find("HorizontalPodAutoscaler", "edgegw-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "edgegw-gateway"}


def _dockerfile() -> tuple[set[str], set[str], dict[str, list[str]]]:
    """Stage names, ARG names, and each stage's CMD (exec form) of the Dockerfile."""
    stages, args, cmds, current = set(), set(), {}, ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if m := re.match(r"FROM\s+\S+\s+AS\s+(\S+)", line, re.I):
            current = m.group(1)
            stages.add(current)
        elif m := re.match(r"ARG\s+(\w+)", line):
            args.add(m.group(1))
        elif line.startswith("CMD "):
            cmds[current] = yaml.safe_load(line[4:])
    return stages, args, cmds


def test_dockerfile_builds_both_variants() -> None:
    stages, args, cmds = _dockerfile()
    assert {"build", "gateway", "backend"} <= stages and "VARIANT" in args
    assert cmds["gateway"][0] == "serve" and cmds["backend"][0] == "backend"


def test_compose_matches_its_policy_and_the_dockerfile(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    services = compose["services"]
    stages, args, cmds = _dockerfile()
    backends = sorted(s for s in services if s.startswith("backend"))
    assert backends == ["backend-1", "backend-2"] and "redis" in services and "gateway" in services
    for name in [*backends, "gateway"]:
        build = services[name]["build"]
        assert (ROOT / build["context"] / "Dockerfile").is_file()
        assert set(build["args"]) <= args and build["args"]["VARIANT"] in stages
    assert {services[b]["build"]["args"]["VARIANT"] for b in backends} == {"backend"}
    assert services["gateway"]["build"]["args"]["VARIANT"] == "gateway"
    # The gateway's command names a mounted policy file that exists here and loads.
    command = services["gateway"]["command"]
    assert command[0] == cmds["gateway"][0] == "serve"
    config_path = command[command.index("--config") + 1]
    mounts = dict(v.split(":")[1::-1] for v in services["gateway"]["volumes"])  # target -> source
    source = ROOT / mounts[config_path]
    assert source.is_file()
    policy = _policy(source.read_text(), tmp_path, monkeypatch,
                     {"EDGEGW_DEMO_SECRET": "x" * 40, "EDGEGW_REDIS_URL": None})
    # Its pool is exactly the compose backends, on the port the backend image listens on.
    backend_port = int(cmds["backend"][cmds["backend"].index("--port") + 1])
    (pool,) = policy.pools
    assert sorted((urlsplit(e.url).hostname, urlsplit(e.url).port) for e in pool.endpoints) == [
        (b, backend_port) for b in backends]
    redis = redis_config(policy)
    assert redis is not None and urlsplit(redis.url).hostname == "redis"
    published = services["gateway"]["ports"][0]
    assert published.split(":")[-1] == str(policy.server.port) and str(policy.server.port) in command
    # The demo model is what the backend image serves by default, and what the pool routes.
    assert cmds["backend"][cmds["backend"].index("--model") + 1] in pool.models
    assert "${EDGEGW_DEMO_SECRET" in (ROOT / "docker-compose.yaml").read_text()
    gpu = yaml.safe_load((ROOT / "deploy" / "compose" / "gpu.yaml").read_text())
    assert set(gpu["services"]) == set(backends)


def test_quickstart_commands_exist() -> None:
    quickstart = (ROOT / "docs" / "quickstart.md").read_text()
    for needed in ("docker compose up", "docker build --build-arg VARIANT=backend",
                   "kubectl apply -k deploy/k8s", "make demo"):
        assert needed in quickstart, needed
    for command in re.findall(r"^\s*(?:\$ )?edgegw (\S+)", quickstart, re.M):
        assert command in {"serve", "check-config", "token", "backend", "demo", "plugin"}, command
