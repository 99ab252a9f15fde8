"""What the gateway says at start and when endpoints change: readiness with endpoint counts, recoveries
at INFO and failures at WARNING."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.conftest import gateway_config


def _wait_log(gw: Any, text: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in gw.proc.log().splitlines():
            if text in line:
                return line
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not logged:\n{gw.proc.log()[-3000:]}")


def test_ready_line_reports_unhealthy_pools_and_readyz_agrees(make_backend: Any, make_gateway: Any) -> None:
    backend = make_backend()
    backend.control(health=503)  # loading, as a backend warming up
    gw = make_gateway(gateway_config([backend]))
    ready = _wait_log(gw, "edgegw ready")
    assert "INFO" in ready and "healthy endpoints: default 0/1" in ready
    warning = _wait_log(gw, "no healthy endpoint yet")
    assert "WARNING" in warning and "default" in warning
    readyz = httpx.get(gw.url + "/readyz", timeout=5)
    assert readyz.status_code == 503 and readyz.json() == {"ready": False, "pools": {"default": False}}
    backend.control(health=200)
    recovered = _wait_log(gw, "is now healthy")
    assert " INFO " in recovered and "WARNING" not in recovered
    assert httpx.get(gw.url + "/readyz", timeout=5).status_code == 200
    backend.control(health=503)
    assert " WARNING " in _wait_log(gw, "is now unhealthy")
