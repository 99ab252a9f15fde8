"""Backends that do not speak HTTP properly are upstream failures like a reset (break #8), and the
non-streamed total timeout is separate from time-to-first-byte (issue 12, "Smaller").

A garbage-speaking backend is a tiny TCP server in this process that writes raw bytes; it answers
its health checks properly, so only the passive outlier detection can take it out of the pool.
"""

from __future__ import annotations

import signal
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from testkit.harness import ROOT
from tests.conftest import gateway_config

_HEALTHY = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"

# What each kind of broken backend answers to an inference request.
GARBAGE: dict[str, bytes | None] = {
    "not-http": b"SSH-2.0-OpenSSH_9.6\r\n\x00\xff\xfe binary noise \x01\x02\r\n\r\n",
    "bad-status-line": b"HTTP/1.1 2OO OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    "huge-header": (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Big: " + b"a" * 100_000
                    + b"\r\nContent-Length: 2\r\n\r\n{}"),
    "many-headers": (b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 40) for i in range(2500))
                     + b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"),
    "early-close": None,  # reads the request, closes without a byte
    "close-mid-headers": b"HTTP/1.1 200 OK\r\nContent-Type: appl",
    "short-body": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{\"id\": ",
    "bad-chunked": (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"zz\r\nnot a chunk\r\n"),
    # Over the pools' max_response_bytes (4 KiB here): declared, or chunked without a length.
    "huge-length": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n{\"a",
    "chunked-flood": (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + (b"400\r\n" + b"x" * 1024 + b"\r\n") * 100),
}


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            part = sock.recv(65536)
            if not part:
                return
            data += part
        server: GarbageServer = self.server  # type: ignore[assignment]
        if data.startswith(b"GET /healthz"):
            sock.sendall(_HEALTHY)
            return
        server.requests += 1
        answer = GARBAGE[server.mode]
        if answer is not None:
            try:
                sock.sendall(answer)
            except OSError:
                return  # the gateway hung up on it first (it may stop reading a 100 KB header)
        time.sleep(0.05)


class GarbageServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, mode: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = mode
        self.requests = 0
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture
def garbage_servers() -> Iterator[dict[str, GarbageServer]]:
    servers = {mode: GarbageServer(mode) for mode in GARBAGE}
    yield servers
    for server in servers.values():
        server.shutdown()
        server.server_close()


def _pool(name: str, urls: list[str]) -> dict[str, Any]:
    return {"name": name, "models": [name], "balancer": "round_robin", "endpoints": [{"url": u} for u in urls],
            "max_response_bytes": 4096,
            "health": {"interval_s": 0.5, "timeout_s": 0.5},
            "outlier": {"consecutive_failures": 2, "base_ejection_s": 60},
            "retries": {"attempts": 2, "min_retries_per_s": 50}}


async def test_garbage_backends_are_retried_and_ejected(garbage_servers: dict[str, GarbageServer],
                                                        make_backend: Any, make_gateway: Any) -> None:
    good = make_backend(models="fake-model")
    cfg = gateway_config([good])
    # Per kind of garbage: a pool of that backend and a good one, and a pool of that backend alone.
    for mode, server in garbage_servers.items():
        cfg["pools"].append(_pool(f"mixed-{mode}", [server.url, good.url]))
        cfg["pools"].append(_pool(f"solo-{mode}", [server.url]))
    gw = make_gateway(cfg)
    async with httpx.AsyncClient(base_url=gw.url, headers={"authorization": f"Bearer {gw.token()}"},
                                 timeout=20) as client:
        for mode, server in garbage_servers.items():
            # Alone: a clean 502 in the OpenAI error shape, never a 500.
            resp = await client.post("/v1/completions", json={"model": f"solo-{mode}", "prompt": "x"})
            assert resp.status_code == 502, (mode, resp.status_code, resp.text)
            error = resp.json()["error"]
            assert error["type"] == "upstream_error" and error["code"] in (
                "upstream_protocol_error", "upstream_connect_error", "upstream_read_error"), (mode, error)
            # Beside a good backend: every request succeeds (retried there), streamed ones too.
            for i in range(8):
                body = {"model": f"mixed-{mode}", "prompt": "x", "max_tokens": 3, "stream": i % 2 == 1}
                resp = await client.post("/v1/completions", json=body)
                assert resp.status_code == 200, (mode, resp.text)
            assert server.requests >= 2, mode
            endpoint = server.url.removeprefix("http://")
            # Ejected (from both pools: the solo one took its two failures too, above and in the retries).
            assert gw.metric("edgegw_endpoint_ejections_total", pool=f"mixed-{mode}", endpoint=endpoint) >= 1, mode
    assert gw.metric("edgegw_upstream_retries_total") >= len(GARBAGE)
    log = gw.proc.log()
    assert "Traceback" not in log and "internal_error" not in log


def test_non_streamed_total_is_separate_from_first_byte(fake_backend: Any, make_gateway: Any) -> None:
    cfg = gateway_config([fake_backend])
    cfg["pools"][0]["timeouts"] = {"first_byte_s": 0.3, "non_stream_total_s": 3}
    cfg["pools"][0]["health"]["interval_s"] = 60  # the stopped backend below stays in the pool
    gw = make_gateway(cfg)
    headers = {"authorization": f"Bearer {gw.token()}", "x-fake-fault": "slow:1"}
    body = {"model": "fake-model", "prompt": "x", "max_tokens": 2}
    # A generation longer than first_byte_s fits, as long as it is within non_stream_total_s.
    assert httpx.post(gw.url + "/v1/completions", json=body, headers=headers, timeout=10).status_code == 200
    # A stopped backend (SIGSTOP: connections are accepted, nothing answers) holds a request for
    # non_stream_total_s, a stream for first_byte_s.
    fake_backend.proc.signal(signal.SIGSTOP)
    try:
        auth = {"authorization": headers["authorization"]}
        started = time.monotonic()
        resp = httpx.post(gw.url + "/v1/completions", json=body, headers=auth, timeout=10)
        took = time.monotonic() - started
        assert resp.status_code == 504 and resp.json()["error"]["code"] == "upstream_timeout"
        assert 2.9 < took < 4.5, took
        started = time.monotonic()
        resp = httpx.post(gw.url + "/v1/completions", json={**body, "stream": True}, headers=auth, timeout=10)
        assert resp.status_code == 504 and time.monotonic() - started < 1.5
    finally:
        fake_backend.proc.signal(signal.SIGCONT)


def _pools_of(path: Path) -> list[dict[str, Any]]:
    doc = yaml.safe_load(path.read_text())
    if doc.get("kind") == "ConfigMap":
        doc = yaml.safe_load(doc["data"]["gateway.yaml"])
    return doc["pools"]


@pytest.mark.parametrize("policy", ["policies/gateway.yaml", "deploy/compose/gateway.yaml",
                                    "deploy/k8s/configmap.yaml"])
def test_shipped_policies_do_not_hold_requests_for_minutes(policy: str) -> None:
    """A stopped backend holds a request at most a minute; a SmolLM2 answer of a few hundred tokens
    on CPU (about 14 tokens/s alone: ~20 s for 300) still fits."""
    for pool in _pools_of(ROOT / policy):
        timeouts = pool["timeouts"]
        assert timeouts["first_byte_s"] <= 30 and timeouts["connect_s"] <= 5
        assert 30 <= timeouts["non_stream_total_s"] <= 60
