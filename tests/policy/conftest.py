"""What the policy canary tests share: a stable policy with a per-caller limit, callers chosen by where
their bucket falls, the `edgegw policy` command, and a running 2-worker gateway to canary on."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.policy.canary import caller_bucket
from testkit.gateways import FakeBackendProc, GatewayProc, gateway_config, start_fake_backend, start_gateway
from testkit.harness import EDGEGW, ROOT
from testkit.policy_load import wait_until, worker_versions

ISSUER = "https://idp.test"  # testkit.gateways.issuer_config


def limited(backend: Any, per_second: int) -> dict[str, Any]:
    """A gateway config whose one route limits each caller to `per_second` requests."""
    config = gateway_config([backend])
    config["routes"] = [{"name": "inference", "paths": ["/v1/chat/completions"],
                         "rate_limits": [{"name": "per-caller", "key": "subject",
                                          "requests_per_second": per_second}]}]
    return config


def subjects(canary: int, stable: int) -> tuple[list[str], list[str]]:
    """Callers that fall in the first 25% (canary) and above 50% (stable through step 2)."""
    inside, outside = [], []
    i = 0
    while len(inside) < canary or len(outside) < stable:
        name = f"caller-{i}"
        bucket = caller_bucket(ISSUER, name)
        if bucket < 0.25 and len(inside) < canary:
            inside.append(name)
        elif bucket >= 0.5 and len(outside) < stable:
            outside.append(name)
        i += 1
    return inside, outside


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGEGW, "policy", *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


@dataclass
class Stable:
    """A running gateway on the stable policy `limited(backend, 100)`, with an operator's token."""

    gw: GatewayProc
    backend: FakeBackendProc
    admin_token: str


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[Stable]:
    """A 2-worker gateway on the stable policy, both workers serving; stopped (with its backend) after."""
    backend = start_fake_backend()
    gw = start_gateway(tmp_path, limited(backend, 100), workers=2)
    try:
        wait_until(lambda: len(worker_versions(gw.url)) == 2, 30)
        yield Stable(gw, backend, gw.token("ops", scopes=["admin"]))
    finally:
        gw.proc.stop()
        backend.proc.stop()
