"""`make demo` comes up on a fresh port and answers a real chat completion through the gateway."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from testkit.harness import EDGEGW, ROOT, free_port, free_ports


@pytest.mark.slow
@pytest.mark.timeout(660)  # a cold start converts SmolLM2 and loads it in two replicas: slow on a slow VM
def test_make_demo_answers_the_paris_question(tmp_path: Path) -> None:
    backend_port = free_ports(2)  # the demo's two replicas listen on backend_port and backend_port + 1
    port = free_port()
    while port in (backend_port, backend_port + 1):
        port = free_port()
    env = {**os.environ, "EDGEGW_PORT": str(port), "EDGEGW_DEMO_BACKEND_PORT": str(backend_port),
           "COLUMNS": "200", "PYTHONUNBUFFERED": "1", "EDGEGW_STATE_DIR": str(tmp_path / "state")}
    env.pop("EDGEGW_DEMO_SECRET", None)
    proc = subprocess.Popen(["make", "--no-print-directory", "demo"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: queue.Queue[str | None] = queue.Queue()
    seen: list[str] = []
    token = None
    exports: dict[str, str] = {}
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
            match = re.match(r"export (\w+)=(\S+)", line.strip())
            if match:
                exports[match.group(1)] = match.group(2)
            if line.startswith("curl "):
                token = exports.get("TOKEN")
        assert token and "ADMIN_TOKEN" in exports, "".join(seen[-40:])
        summary = "".join(seen)
        assert f"http://127.0.0.1:{port}/v1" in summary and f"http://127.0.0.1:{backend_port}" in summary
        assert exports["GATEWAY_URL"] == f"http://127.0.0.1:{port}"
        # The suggested curl uses the partner token and a deterministic request.
        curl = next(line for line in seen if line.startswith("curl "))
        assert f"Bearer {token}" in curl and '"temperature": 0' in curl
        resp = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=120,
                          headers={"authorization": f"Bearer {token}"},
                          json={"model": "smollm2", "max_tokens": 24, "temperature": 0,
                                "messages": [{"role": "user", "content": "What is the capital of France?"}]})
        assert resp.status_code == 200, resp.text
        assert "Paris" in resp.json()["choices"][0]["message"]["content"]
        # /v1/generate with only prompt and max_tokens, on the shipped policy.
        gen = httpx.post(f"http://127.0.0.1:{port}/v1/generate", timeout=120, headers={"authorization": f"Bearer {token}"},
                         json={"prompt": "The capital of France is", "max_tokens": 8})
        assert gen.status_code == 200 and gen.json()["model"] == "smollm2", gen.text
        # The partner token is not an operator's; the admin token is.
        admin_url = f"http://127.0.0.1:{port}/admin/pools"
        assert httpx.get(admin_url, headers={"authorization": f"Bearer {token}"}).status_code == 403
        assert httpx.get(admin_url, headers={"authorization": f"Bearer {exports['ADMIN_TOKEN']}"}).status_code == 200
        # `edgegw token` signs with the demo's stored secret when EDGEGW_DEMO_SECRET is unset.
        minted = subprocess.run([*EDGEGW, "token", "--issuer", "demo", "--sub", "partner-2"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=60)
        assert minted.returncode == 0, minted.stderr
        other = httpx.get(f"http://127.0.0.1:{port}/v1/models",
                          headers={"authorization": f"Bearer {minted.stdout.strip()}"})
        assert other.status_code == 200 and {m["id"] for m in other.json()["data"]} == {"smollm2",
                                                                                       "all-minilm-l6-v2"}
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
