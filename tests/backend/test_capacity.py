"""Bounded queue (503 + Retry-After), cancellation on disconnect, and draining on SIGTERM."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.backend.conftest import BackendProc, start_backend

LONG = {"model": "tiny-llama", "prompt": "go", "max_tokens": 4000, "temperature": 0, "ignore_eos": True}


@pytest.fixture(scope="module")
def small_backend(tiny_model: Path) -> Iterator[BackendProc]:
    """One running sequence at most, one waiting."""
    backend = start_backend(tiny_model, "--max-batch-size", "1", "--max-queue", "1", name="small-backend")
    yield backend
    backend.stop()


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached")


class Stream:
    """A streamed completion left unread after its first line (the client keeps the connection open)."""

    def __init__(self, backend: BackendProc, *, wait_first_token: bool = True) -> None:
        self.client = httpx.Client(timeout=30)
        request = self.client.build_request("POST", backend.url + "/v1/completions",
                                            json={**LONG, "stream": True})
        self.response = self.client.send(request, stream=True)
        assert self.response.status_code == 200
        # Keep the iterator referenced: dropping it would close the response (httpx closes on GC).
        self.lines = self.response.iter_lines()
        if wait_first_token:
            next(self.lines)

    def close(self) -> None:
        self.response.close()
        self.client.close()


def test_queue_full_gives_503_with_retry_after(small_backend: BackendProc) -> None:
    running = Stream(small_backend)
    waiting = Stream(small_backend, wait_first_token=False)
    _wait_for(lambda: small_backend.metric("vllm:num_requests_waiting") == 1)
    try:
        third = httpx.post(small_backend.url + "/v1/completions", json=LONG, timeout=10)
        assert third.status_code == 503
        assert third.headers["retry-after"] == "1"
        assert third.json()["error"]["code"] == "queue_full"
    finally:
        running.close()
        waiting.close()
    _wait_for(lambda: small_backend.metric("vllm:num_requests_running") == 0
              and small_backend.metric("vllm:num_requests_waiting") == 0)


def test_disconnect_cancels_and_frees_the_slot(small_backend: BackendProc) -> None:
    aborted = small_backend.metric("vllm:request_success_total", finished_reason="abort")
    Stream(small_backend).close()
    # The only slot is free again long before 4000 tokens could have been generated.
    _wait_for(lambda: small_backend.metric("vllm:num_requests_running") == 0, timeout=5)
    assert small_backend.metric("vllm:request_success_total", finished_reason="abort") == aborted + 1
    ok = httpx.post(small_backend.url + "/v1/completions", json={**LONG, "max_tokens": 3}, timeout=10)
    assert ok.status_code == 200 and ok.json()["usage"]["completion_tokens"] == 3


def test_non_streaming_disconnect_cancels(small_backend: BackendProc) -> None:
    aborted = small_backend.metric("vllm:request_success_total", finished_reason="abort")
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(small_backend.url + "/v1/completions", json=LONG, timeout=0.5)
    _wait_for(lambda: small_backend.metric("vllm:request_success_total", finished_reason="abort") == aborted + 1)


def test_sigterm_drains_in_flight_requests(tiny_model: Path) -> None:
    backend = start_backend(tiny_model, name="drain-backend")
    result: dict[str, object] = {}

    def request() -> None:
        # ~3 s of decoding: long enough to still be running once a busy machine has sent the checks below
        # (150 tokens, 0.3 s, could finish first; then the backend exits and refuses the connection).
        r = httpx.post(backend.url + "/v1/completions", json={**LONG, "max_tokens": 1500}, timeout=60)
        result["status"], result["body"] = r.status_code, r.json()

    worker = threading.Thread(target=request)
    worker.start()
    _wait_for(lambda: backend.metric("vllm:num_requests_running") == 1)
    backend.proc.signal(signal.SIGTERM)
    _wait_for(lambda: _status(backend) == 503, timeout=5)  # draining: the gateway must go elsewhere
    refused = httpx.post(backend.url + "/v1/completions", json=LONG, timeout=5)
    assert refused.status_code == 503
    worker.join(60)
    assert result["status"] == 200
    assert result["body"]["usage"]["completion_tokens"] == 1500  # finished, not cut off
    backend.proc.popen.wait(30)
    assert backend.proc.popen.returncode == 0


def _status(backend: BackendProc) -> int:
    try:
        return httpx.get(backend.url + "/healthz", timeout=1).status_code
    except httpx.HTTPError:
        return 0


def test_engine_process_death_fails_requests_and_exits(tiny_model: Path) -> None:
    """If the model process dies, in-flight requests get an error and the backend exits non-zero, so its
    supervisor (--replicas, Kubernetes) restarts it instead of keeping a server that cannot generate."""
    import psutil

    backend = start_backend(tiny_model, name="doomed-backend")
    try:
        stream = Stream(backend)
        engine = max(psutil.Process(backend.proc.popen.pid).children(), key=lambda p: p.memory_info().rss)
        engine.kill()
        rest = list(stream.lines)  # the same iterator: the stream goes on where the test left it
        assert any('"engine_error"' in line for line in rest)
        stream.close()
        assert backend.proc.popen.wait(30) == 1
    finally:
        backend.stop()
