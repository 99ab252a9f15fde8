"""`make demo` comes up on a fresh port and answers a real chat completion through the gateway."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time

import httpx
import pytest

from tests.harness import ROOT, free_port, free_ports


@pytest.mark.slow
@pytest.mark.timeout(660)  # a cold start converts SmolLM2 and loads it in two replicas: slow on a slow VM
def test_make_demo_answers_the_paris_question() -> None:
    backend_port = free_ports(2)  # the demo's two replicas listen on backend_port and backend_port + 1
    port = free_port()
    while port in (backend_port, backend_port + 1):
        port = free_port()
    env = {**os.environ, "EDGEGW_PORT": str(port), "EDGEGW_DEMO_BACKEND_PORT": str(backend_port),
           "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    env.pop("EDGEGW_DEMO_SECRET", None)
    proc = subprocess.Popen(["make", "--no-print-directory", "demo"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: queue.Queue[str | None] = queue.Queue()
    seen: list[str] = []
    token = None
    try:
        # A reader thread, so the wait has our deadline (and the failure shows what the demo printed)
        # instead of blocking in readline until pytest's timeout kills the test.
        threading.Thread(target=_read_lines, args=(proc, lines), daemon=True).start()
        deadline = time.monotonic() + 600
        while token is None and (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            seen.append(line)
            match = re.match(r"TOKEN=(\S+)", line.strip())
            if match:
                token = match.group(1)
        assert token, "".join(seen[-40:])
        summary = "".join(seen)
        assert f"http://127.0.0.1:{port}/v1" in summary and f"http://127.0.0.1:{backend_port}" in summary
        resp = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=120,
                          headers={"authorization": f"Bearer {token}"},
                          json={"model": "smollm2", "max_tokens": 24, "temperature": 0,
                                "messages": [{"role": "user", "content": "What is the capital of France?"}]})
        assert resp.status_code == 200, resp.text
        assert "Paris" in resp.json()["choices"][0]["message"]["content"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _read_lines(proc: subprocess.Popen[str], out: queue.Queue[str | None]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        out.put(line)
    out.put(None)
