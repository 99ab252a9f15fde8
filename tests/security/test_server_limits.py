"""Hostile clients against a real gateway process: slowloris, idle and half-sent connections, header
bombs, too many connections, slow bodies and garbage request lines."""

from __future__ import annotations

import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import FakeBackendProc, GatewayProc, gateway_config, start_fake_backend, start_gateway

PARTIAL_HEAD = b"POST /v1/completions HTTP/1.1\r\nHost: gw\r\nX-Slow: "


@pytest.fixture(scope="module")
def backend() -> Iterator[FakeBackendProc]:
    b = start_fake_backend()
    yield b
    b.proc.stop()


def limited_gateway(tmp_path: Path, backend: FakeBackendProc, **server: Any) -> GatewayProc:
    config = gateway_config([backend])
    config["server"].update(server)
    return start_gateway(tmp_path, config)


def connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def exchange(port: int, data: bytes, wait_s: float = 5.0) -> bytes:
    """Send raw bytes and read until the server closes (or `wait_s` passes)."""
    with connect(port) as s:
        s.settimeout(wait_s)
        try:
            s.sendall(data)
        except OSError:
            pass  # the server may close mid-send; what it answered is still readable
        return read_until_closed(s)


def read_until_closed(s: socket.socket) -> bytes:
    out = b""
    try:
        while chunk := s.recv(65536):
            out += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return out


def status_and_error(response: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = response.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"content-type: application/json" in head.lower(), head
    return status, orjson.loads(body)["error"]


def completion(gw: GatewayProc, client: httpx.Client) -> int:
    resp = client.post(gw.url + "/v1/completions", json={"model": "fake-model", "prompt": "x", "max_tokens": 1},
                       headers={"authorization": f"Bearer {gw.token()}"}, timeout=10)
    return resp.status_code


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slowloris_and_idle_connections_are_closed_while_normal_requests_succeed(
        tmp_path: Path, backend: FakeBackendProc) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    n = min(1500, (hard if hard != resource.RLIM_INFINITY else 4096) - 200)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, n + 200), hard))
    gw = limited_gateway(tmp_path, backend, header_timeout_s=2)
    slow: list[socket.socket] = []
    try:
        opened = time.monotonic()
        for i in range(n):
            s = connect(gw.port)
            if i % 2:
                s.sendall(PARTIAL_HEAD)  # a head that never ends
            slow.append(s)  # the other half never sends a byte
        with httpx.Client() as client:
            statuses = [completion(gw, client) for _ in range(20)]
        assert statuses == [200] * 20
        # After the header timeout every slow connection has been closed by the gateway.
        time.sleep(max(0.0, opened + 2 + 1.5 - time.monotonic()))
        answered_408 = closed_silently = still_open = 0
        for s in slow:
            s.settimeout(3)
            try:
                data = read_until_closed(s)
            except OSError:
                data = b""
            if data.startswith(b"HTTP/1.1 408"):
                answered_408 += 1
            elif data == b"":
                closed_silently += 1
            else:
                still_open += 1
        assert still_open == 0
        assert answered_408 == n // 2  # the half-sent heads are told why
        assert closed_silently == n - n // 2
        with httpx.Client() as client:
            assert completion(gw, client) == 200
        assert gw.metric("edgegw_listener_refusals_total", reason="header_timeout") == n // 2
        assert gw.metric("edgegw_listener_refusals_total", reason="idle") >= n - n // 2
    finally:
        for s in slow:
            s.close()
        gw.proc.stop()


def test_header_bombs_get_431_and_memory_stays_bounded(tmp_path: Path, backend: FakeBackendProc) -> None:
    gw = limited_gateway(tmp_path, backend)  # defaults: 32 KiB of head, 100 headers
    try:
        one_mb = b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
        response = exchange(gw.port, one_mb)
        assert response == b"" or status_and_error(response)[0] == 431  # never 200
        status, error = status_and_error(exchange(gw.port, b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Big: "
                                                  + b"a" * 40000 + b"\r\n\r\n"))
        assert (status, error["code"]) == (431, "header_too_large")
        long_url = b"GET /healthz?q=" + b"a" * 40000 + b" HTTP/1.0\r\n\r\n"
        assert status_and_error(exchange(gw.port, long_url))[0] == 431
        many = b"GET /healthz HTTP/1.1\r\nHost: gw\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(150)) + b"\r\n"
        status, error = status_and_error(exchange(gw.port, many))
        assert (status, error["code"], error["type"]) == (431, "too_many_headers", "invalid_request_error")
        ok = b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Fine: " + b"a" * 8000 + b"\r\nConnection: close\r\n\r\n"
        assert exchange(gw.port, ok).startswith(b"HTTP/1.1 200")

        # 20 connections each pushing 32 MiB of a head that never ends: cut off after the limit.
        before = rss_kib(gw.proc.popen.pid)
        chunk = b"a" * 65536
        bombs = [connect(gw.port) for _ in range(20)]
        for s in bombs:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\nX-Bomb: ")
        sent = []
        for s in bombs:
            sent.append(0)
            try:
                for _ in range(512):
                    s.sendall(chunk)
                    sent[-1] += len(chunk)
            except OSError:
                pass
        assert max(sent) < 512 * len(chunk)  # the gateway hung up on every one before its 32 MiB
        growth_mib = (rss_kib(gw.proc.popen.pid) - before) / 1024
        assert growth_mib < 40, growth_mib
        for s in bombs:
            s.close()
        with httpx.Client() as client:
            assert completion(gw, client) == 200
    finally:
        gw.proc.stop()


def test_connections_beyond_the_limit_get_503_and_close(tmp_path: Path, backend: FakeBackendProc) -> None:
    gw = limited_gateway(tmp_path, backend, max_connections=40)
    held: list[socket.socket] = []
    try:
        time.sleep(0.3)  # the readiness probe's connection has gone
        with httpx.Client() as partner:  # a client already connected when the flood starts
            assert completion(gw, partner) == 200
            held = [connect(gw.port) for _ in range(39)]
            flood = [exchange(gw.port, b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n") for _ in range(200)]
            assert {status_and_error(r)[1]["code"] for r in flood} == {"connection_limit"}
            assert all(r.startswith(b"HTTP/1.1 503") for r in flood)
            assert [completion(gw, partner) for _ in range(5)] == [200] * 5  # its connection keeps working
        for s in held[:5]:
            s.close()
        time.sleep(0.3)
        with httpx.Client() as client:
            assert completion(gw, client) == 200
            assert client.get(gw.url + "/healthz").status_code == 200  # same keep-alive connection
        assert gw.metric("edgegw_listener_refusals_total", reason="connection_limit") == 200
        assert gw.proc.log().count("server.max_connections (40) reached") == 1  # not one line per refusal
    finally:
        for s in held:
            s.close()
        gw.proc.stop()


def test_slow_body_and_idle_keepalive_are_cut_off(tmp_path: Path, backend: FakeBackendProc) -> None:
    gw = limited_gateway(tmp_path, backend, body_timeout_s=1, keepalive_timeout_s=1)
    try:
        started = time.monotonic()
        head = (b"POST /v1/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
                b"Authorization: Bearer " + gw.token().encode() + b"\r\nContent-Length: 500\r\n\r\n{\"model\"")
        status, error = status_and_error(exchange(gw.port, head))
        assert (status, error["code"]) == (408, "body_timeout")
        assert 0.9 < time.monotonic() - started < 4
        with connect(gw.port) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
            s.settimeout(5)
            started = time.monotonic()
            data = read_until_closed(s)  # the response, then the idle connection is closed
            assert data.startswith(b"HTTP/1.1 200") and 0.9 < time.monotonic() - started < 4
    finally:
        gw.proc.stop()


@pytest.mark.parametrize("request_bytes, status", [
    (b"FOO /v1/models HTTP/1.1\r\nHost: gw\r\n\r\n", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 400),  # a TLS hello on the plain port
    (b"GET /v1/models HTTP/9.9\r\nHost: gw\r\n\r\n", 400),
    (b"PUT /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 405),
])
def test_garbage_and_wrong_methods_get_openai_errors(tmp_path: Path, backend: FakeBackendProc,
                                                     request_bytes: bytes, status: int) -> None:
    gw = _shared_gateway(tmp_path, backend)
    got, error = status_and_error(exchange(gw.port, request_bytes))
    assert got == status and error["type"] == "invalid_request_error" and error["message"]
    assert "Traceback" not in gw.proc.log()


def test_upgrade_requests_are_served_as_http_and_closed(tmp_path: Path, backend: FakeBackendProc) -> None:
    gw = _shared_gateway(tmp_path, backend)
    for upgrade in (b"Connection: Upgrade\r\nUpgrade: websocket\r\n",
                    b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"):
        started = time.monotonic()
        response = exchange(gw.port, b"GET /healthz HTTP/1.1\r\nHost: gw\r\n" + upgrade + b"\r\n"
                            b"GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 200") and b"connection: close" in response.lower()
        assert response.count(b"HTTP/1.1") == 1 and time.monotonic() - started < 2
        assert b"\r\nserver:" not in response.lower()  # no banner
    assert "Unsupported upgrade" not in gw.proc.log()


_gateways: dict[str, GatewayProc] = {}


def _shared_gateway(tmp_path: Path, backend: FakeBackendProc) -> GatewayProc:
    gw = _gateways.get("plain")
    if gw is None or not gw.proc.alive():
        gw = _gateways["plain"] = limited_gateway(tmp_path, backend)
    return gw


def teardown_module() -> None:
    for gw in _gateways.values():
        gw.proc.stop()
