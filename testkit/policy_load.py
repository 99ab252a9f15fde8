"""Helpers for the policy tests: steady client load, policy files, per-worker version checks."""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import yaml

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


class Load:
    """`clients` threads sending chat requests on keep-alive connections until stopped.

    Every answer other than 200 is a failure (kept with its body for the assertion message)."""

    def __init__(self, url: str, token: str | list[str], clients: int = 16, path: str = "/v1/chat/completions",
                 body: dict[str, Any] | None = None, rate: float | None = None) -> None:
        """`token`: one for every client, or one per client (its length sets the number of clients).
        `rate`: at most this many requests per second per client (None: as fast as answers come). A test
        that asserts a per-caller rate limit is never reached must set it: an unpaced client's rate is
        whatever the machine allows, and alone on an idle one it exceeds 100 per second."""
        self.url = url
        self.interval_s = 1.0 / rate if rate else 0.0
        tokens = token if isinstance(token, list) else [token] * clients
        clients = len(tokens)
        self.path = path
        self.body = body or CHAT
        self.stop_event = threading.Event()
        self.statuses: Counter[int] = Counter()
        self.backends: Counter[str] = Counter()
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.by_token: Counter[str] = Counter()
        self.threads = [threading.Thread(target=self._run, args=(t,), daemon=True) for t in tokens]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=30)

    def _run(self, token: str) -> None:
        headers = {"authorization": f"Bearer {token}"}
        next_at = time.monotonic()
        with httpx.Client(base_url=self.url, headers=headers, timeout=30) as client:
            while not self.stop_event.is_set():
                if self.interval_s:
                    # Never a catch-up burst after a slow answer: no window sees more than `rate`.
                    next_at = max(next_at + self.interval_s, time.monotonic())
                    if self.stop_event.wait(max(0.0, next_at - time.monotonic())):
                        break
                try:
                    resp = client.post(self.path, json=self.body)
                    status, body = resp.status_code, resp.text
                    streamed = self.body.get("stream")
                    backend = resp.json().get("system_fingerprint", "") if status == 200 and not streamed else ""
                except httpx.HTTPError as exc:
                    status, body, backend = 0, repr(exc), ""
                with self.lock:
                    self.statuses[status] += 1
                    self.by_token[f"{token}:{status}"] += 1
                    if backend:
                        self.backends[backend] += 1
                    if status != 200:
                        self.failures.append(f"{status}: {body[:300]}")

    @property
    def total(self) -> int:
        with self.lock:
            return sum(self.statuses.values())


def write_policy(path: Path, config: dict[str, Any]) -> str:
    """Replace the policy file as a deployment tool would (write beside it, rename over it)."""
    text = yaml.safe_dump(config)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return text


def worker_versions(gateway_url: str) -> dict[str, str]:
    """pid -> version of every live worker, from `edgegw_policy_info` (value 1) on /metrics."""
    out: dict[str, str] = {}
    for line in httpx.get(gateway_url + "/metrics", timeout=5).text.splitlines():
        if line.startswith("edgegw_policy_info{") and line.endswith(" 1.0"):
            pid = re.search(r'pid="(\d+)"', line)
            version = re.search(r'version="(\w+)"', line)
            if version:
                out[pid.group(1) if pid else "single"] = version.group(1)
    return out


def wait_until(check: Any, timeout: float, interval: float = 0.05) -> float:
    """Seconds until `check()` is true; raises AssertionError after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(interval)
    raise AssertionError(f"not true within {timeout} s: {getattr(check, '__doc__', None) or check}")


def start_gateway_file(path: Path, workers: int = 1) -> Any:
    """`edgegw serve` on an existing policy file (a symlink, say), as `tests.conftest.start_gateway` does."""
    from testkit.gateways import GatewayProc
    from testkit.harness import EDGEGW, free_port, start_server

    port = free_port()
    args = [*EDGEGW, "serve", "--config", str(path), "--port", str(port), "--workers", str(workers)]
    proc = start_server(args, f"http://127.0.0.1:{port}/healthz", name="gateway")
    return GatewayProc(proc, port, path, yaml.safe_load(path.read_text()))
