"""Fixtures for the operations tests: a DNS server we control, fake backends on 127.0.0.x."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from testkit.harness import Proc, start_server
from tests.ops.dns_server import FakeDns


class HostBackend:
    """A fake backend listening on one loopback address (127.0.0.2, ...) and a port shared by all."""

    def __init__(self, host: str, port: int, name: str) -> None:
        self.host = host
        self.url = f"http://{host}:{port}"
        self.proc: Proc = start_server(
            [sys.executable, "-m", "testkit.fakes.backend", "--host", host, "--port", str(port), "--name", name,
             "--models", "fake-model"], self.url + "/healthz", name=f"fake-{name}")

    def stats(self) -> dict[str, Any]:
        return httpx.get(self.url + "/_stats", timeout=5).json()


@pytest.fixture
def fake_dns() -> Iterator[FakeDns]:
    server = FakeDns().start()
    yield server
    server.stop()


@pytest.fixture
def host_backends() -> Iterator[Any]:
    started: list[HostBackend] = []

    def make(host: str, port: int, name: str) -> HostBackend:
        backend = HostBackend(host, port, name)
        started.append(backend)
        return backend

    yield make
    for backend in started:
        backend.proc.stop()
