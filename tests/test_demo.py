"""`make demo` comes up on a fresh port and answers a real chat completion through the gateway."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import httpx
import pytest

from tests.harness import ROOT, free_port


@pytest.mark.slow
def test_make_demo_answers_the_paris_question() -> None:
    port, backend_port = free_port(), free_port()
    env = {**os.environ, "EDGEGW_PORT": str(port), "EDGEGW_DEMO_BACKEND_PORT": str(backend_port),
           "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}
    env.pop("EDGEGW_DEMO_SECRET", None)
    proc = subprocess.Popen(["make", "--no-print-directory", "demo"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    token = None
    try:
        deadline = time.monotonic() + 600
        assert proc.stdout is not None
        while token is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            match = re.match(r"TOKEN=(\S+)", line.strip())
            if match:
                token = match.group(1)
        assert token, "".join(lines[-40:])
        summary = "".join(lines)
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
