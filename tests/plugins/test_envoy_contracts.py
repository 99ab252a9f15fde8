"""Two proxy-wasm contracts as Envoy keeps them, each with a WAT plugin of ours built from source:

- Pause without a pending http call (the Go SDK's postpone-requests example): the host holds the
  request until another context resumes it (here a tick); one nobody resumes fails within
  `limits.http_call_timeout_ms` as `pause_timeout`, instead of hanging or going on at once.
- `:authority` set to a value that is not a bare host[:port] (the Go SDK's http-routing example
  appends `-canary` to `127.0.0.1:PORT`): forwarded as the upstream Host, not a plugin failure."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import gateway_config, start_fake_backend, start_gateway
from tests.plugins.conftest import plugin_entry
from wasm_plugins.build import build_wat

TICK_MS = 300
WAT = Path(__file__).parent / "wasm" / "wat"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("envoy-contracts")
    for name in ("postpone", "canary_authority"):
        build_wat(WAT / f"{name}.wat", folder / f"{name}.wasm")
    backend = start_fake_backend(name="pause")
    cfg = gateway_config([backend])
    cfg["pools"][0]["models"] = ["fake-model", "m-*"]
    limits = {"deadline_ms": 100, "min_tick_ms": TICK_MS, "http_call_timeout_ms": 600}
    cfg["plugins"] = [plugin_entry("postpone", folder / "postpone.wasm", limits=limits),
                      plugin_entry("forgetful", folder / "postpone.wasm", limits=limits, config="never"),
                      plugin_entry("canary", folder / "canary_authority.wasm", limits=limits)]
    cfg["routes"] = [
        {"name": f"r-{name}", "paths": ["/v1/completions"], "models": [f"m-{name}"], "pool": "default",
         "auth": "none", "plugins": [{"name": name, "phase": phase}]}
        for name, phase in (("postpone", "preprocess"), ("forgetful", "preprocess"), ("canary", "routing"))
    ]
    gateway = start_gateway(folder, cfg)
    gateway.backend = backend
    yield gateway
    gateway.proc.stop()
    backend.proc.stop()


def post(gw: Any, model: str) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    resp = httpx.post(gw.url + "/v1/completions", json={"model": model, "prompt": "hi", "max_tokens": 2},
                      timeout=10)
    return resp, time.monotonic() - started


def test_a_paused_request_is_held_until_a_tick_resumes_it(gw: Any) -> None:
    post(gw, "m-postpone")  # lines the requests up with the ticks
    held = []
    for _ in range(3):
        resp, elapsed = post(gw, "m-postpone")
        assert resp.status_code == 200, resp.text
        held.append(elapsed)
    # Each request arrives just after the tick that resumed the one before, so it waits about a
    # whole period for the next (the host used to continue at once: a few ms).
    assert max(held) > TICK_MS / 1000 * 0.6, held


def test_a_request_nobody_resumes_fails_within_the_bound(gw: Any) -> None:
    before = gw.backend.stats()["requests"]
    resp, elapsed = post(gw, "m-forgetful")
    assert resp.status_code == 500, resp.text
    assert "pause_timeout" in resp.json()["error"]["message"]
    assert 0.5 < elapsed < 3, elapsed
    assert gw.backend.stats()["requests"] == before  # never forwarded
    assert post(gw, "m-postpone")[0].status_code == 200  # the worker goes on serving


def test_an_authority_that_is_a_routing_label_becomes_the_upstream_host(gw: Any) -> None:
    resp, _ = post(gw, "m-canary")
    assert resp.status_code == 200, resp.text
    assert gw.backend.stats()["last_host"] == f"127.0.0.1:{gw.port}-canary"
