"""`edgegw backend --replicas 2`: two processes on consecutive ports, stopped together by SIGTERM."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from testkit.harness import EDGEGW, Proc, free_ports
from tests.backend.conftest import OFFLINE


def test_two_replicas_on_consecutive_ports(tiny_model: Path) -> None:
    port = free_ports(2)
    proc = Proc([*EDGEGW, "backend", "--model", str(tiny_model), "--port", str(port), "--replicas", "2",
                 "--served-model-name", "tiny"], env=OFFLINE, name="replicas")
    try:
        for p in (port, port + 1):
            proc.wait_http(f"http://127.0.0.1:{p}/healthz", timeout=180)
        answers = []
        for p in (port, port + 1):
            r = httpx.post(f"http://127.0.0.1:{p}/v1/completions", timeout=30,
                           json={"model": "tiny", "prompt": "same", "max_tokens": 6, "temperature": 0})
            assert r.status_code == 200
            answers.append(r.json()["choices"][0]["text"])
        assert answers[0] == answers[1]  # same weights, greedy: replicas are interchangeable
        proc.popen.send_signal(signal.SIGTERM)  # the parent forwards it and waits for the replicas
        assert proc.popen.wait(60) == 0
        for p in (port, port + 1):
            try:
                httpx.get(f"http://127.0.0.1:{p}/healthz", timeout=1)
                raise AssertionError(f"replica on {p} still answers")
            except httpx.ConnectError:
                pass
    finally:
        proc.stop()
