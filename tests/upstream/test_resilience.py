"""Failover, ejection and re-admission, retries, timeouts, saturation and streaming faults."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import gateway_config

BODY = {"model": "fake-model", "prompt": "hello", "max_tokens": 2}


def _auth(gw: Any) -> dict[str, str]:
    return {"authorization": f"Bearer {gw.token()}"}


async def _burst(gw: Any, n: int, concurrency: int, during: Any = None, body: dict | None = None) -> list[int]:
    headers = _auth(gw)
    statuses: list[int] = []
    sem = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=gw.url, headers=headers, timeout=20) as client:
        async def one(i: int) -> None:
            async with sem:
                if during is not None and i == n // 3:
                    during()
                resp = await client.post("/v1/completions", json=body or BODY)
                statuses.append(resp.status_code)
        await asyncio.gather(*(one(i) for i in range(n)))
    return statuses


async def test_backend_killed_during_traffic_no_client_errors(make_backend: Any, make_gateway: Any) -> None:
    a, b = make_backend(name="a"), make_backend(name="b")
    cfg = gateway_config([a, b])
    # Slow active checks, so the passive outlier detector is what notices the dead replica first (at
    # 1 s a busy machine's burst outlasted the interval and the health check won, with no ejection).
    cfg["pools"][0]["health"]["interval_s"] = 4.0
    gw = make_gateway(cfg)
    statuses = await _burst(gw, 400, 16, during=b.proc.kill)
    assert statuses.count(200) == 400, {s: statuses.count(s) for s in set(statuses)}
    diag = "\n".join(ln for ln in httpx.get(gw.url + "/metrics").text.splitlines() if "upstream" in ln)
    assert gw.metric("edgegw_endpoint_ejections_total", endpoint=f"127.0.0.1:{b.port}") >= 1, diag
    assert gw.metric("edgegw_endpoint_healthy", endpoint=f"127.0.0.1:{b.port}") == 0
    # The replica comes back on its port: active health checks re-admit it.
    b2 = make_backend(name="b", port=b.port)
    deadline = time.monotonic() + 20
    while gw.metric("edgegw_endpoint_healthy", endpoint=f"127.0.0.1:{b.port}") != 1:
        assert time.monotonic() < deadline, "endpoint was not re-admitted"
        await asyncio.sleep(0.1)
    assert gw.metric("edgegw_endpoint_readmissions_total", endpoint=f"127.0.0.1:{b.port}") >= 1
    await _burst(gw, 40, 4)
    assert b2.stats()["requests"] > 0


async def test_503_is_retried_on_another_endpoint_500_is_not(make_backend: Any, make_gateway: Any) -> None:
    a, b = make_backend(name="a"), make_backend(name="b")
    cfg = gateway_config([a, b])
    cfg["pools"][0]["outlier"]["consecutive_failures"] = 1000  # keep both in rotation for this test
    # Round robin sends exactly half the first attempts to the failing replica, so the retries stay
    # inside the retry budget (a fast-failing replica would attract least-outstanding traffic).
    cfg["pools"][0]["balancer"] = "round_robin"
    gw = make_gateway(cfg)
    b.control(fault="503")
    statuses = await _burst(gw, 60, 4)
    assert statuses.count(200) == 60
    assert gw.metric("edgegw_upstream_retries_total", pool="default") >= 1
    b.control(fault="500")
    statuses = await _burst(gw, 40, 4)
    assert 0 < statuses.count(500) < 40 and statuses.count(500) + statuses.count(200) == 40


def test_first_byte_timeout_gives_504(fake_backend: Any, make_gateway: Any) -> None:
    cfg = gateway_config([fake_backend])
    cfg["pools"][0]["timeouts"] = {"first_byte_s": 0.3}
    gw = make_gateway(cfg)
    started = time.monotonic()
    # (first_byte_s bounds streamed requests; a non-streamed one has its own total: non_stream_total_s)
    resp = httpx.post(gw.url + "/v1/completions", json={**BODY, "stream": True},
                      headers={**_auth(gw), "x-fake-fault": "slow:3"})
    assert resp.status_code == 504 and resp.json()["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 1.5


async def test_saturated_pool_answers_503_fast(fake_backend: Any, make_gateway: Any) -> None:
    cfg = gateway_config([fake_backend])
    cfg["pools"][0]["max_inflight_per_endpoint"] = 2
    gw = make_gateway(cfg)
    async with httpx.AsyncClient(base_url=gw.url, headers={**_auth(gw), "x-fake-fault": "slow:1"},
                                 timeout=10) as client:
        slow = [asyncio.create_task(client.post("/v1/completions", json=BODY)) for _ in range(2)]
        await asyncio.sleep(0.3)
        started = time.monotonic()
        resp = await client.post("/v1/completions", json=BODY)
        assert time.monotonic() - started < 0.2
        assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
        assert resp.json()["error"]["code"] == "pool_saturated"
        assert [r.status_code for r in await asyncio.gather(*slow)] == [200, 200]


def test_readyz_and_no_healthy_endpoint(fake_backend: Any, make_gateway: Any) -> None:
    gw = make_gateway(gateway_config([fake_backend]))
    assert httpx.get(gw.url + "/readyz").status_code == 200
    fake_backend.control(health=503)
    deadline = time.monotonic() + 5
    while httpx.get(gw.url + "/readyz").status_code != 503:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    resp = httpx.post(gw.url + "/v1/completions", json=BODY, headers=_auth(gw))
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "no_healthy_upstream"
    assert "retry-after" in resp.headers


async def test_weighted_canary_split_and_round_robin(make_backend: Any, make_gateway: Any) -> None:
    stable, canary = make_backend(name="stable"), make_backend(name="canary")
    cfg = gateway_config([stable, canary])
    cfg["pools"][0]["balancer"] = "weighted"
    cfg["pools"][0]["endpoints"] = [{"url": stable.url, "weight": 95, "group": "stable"},
                                    {"url": canary.url, "weight": 5, "group": "canary"}]
    gw = make_gateway(cfg)
    await _burst(gw, 200, 1)
    assert (stable.stats()["requests"], canary.stats()["requests"]) == (190, 10)
    stable.control(reset=True)
    canary.control(reset=True)
    cfg["pools"][0]["balancer"] = "round_robin"
    gw2 = make_gateway(cfg)
    await _burst(gw2, 100, 1)
    assert (stable.stats()["requests"], canary.stats()["requests"]) == (50, 50)


def test_upstream_death_mid_stream_gives_sse_error(fake_backend: Any, make_gateway: Any) -> None:
    gw = make_gateway(gateway_config([fake_backend]))
    body = {"model": "fake-model", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10,
            "stream": True}
    headers = {**_auth(gw), "x-fake-fault": "die-mid-stream:3"}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, headers=headers) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "text/event-stream"
        assert resp.headers["cache-control"] == "no-cache" and resp.headers["x-accel-buffering"] == "no"
        text = resp.read().decode()
    assert text.count('"delta"') == 3
    assert "event: error" in text and "upstream_stream_error" in text
    assert text.rstrip().endswith("data: [DONE]")
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.token(), max_retries=0,
                           default_headers={"x-fake-fault": "die-mid-stream:2"})
    with pytest.raises(openai.APIError, match="mid-stream"):
        for _ in client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "x"}],
                                                max_tokens=10, stream=True):
            pass


def test_client_disconnect_cancels_upstream(make_backend: Any, make_gateway: Any) -> None:
    backend = make_backend(token_delay=0.05)
    gw = make_gateway(gateway_config([backend]))
    body = {"model": "fake-model", "prompt": "x", "max_tokens": 500, "stream": True}
    started = time.monotonic()
    with httpx.stream("POST", gw.url + "/v1/completions", json=body, headers=_auth(gw)) as resp:
        chunks = resp.iter_bytes()
        first = next(chunks)
        assert b"tok0" in first
        assert time.monotonic() - started < 2  # the first token arrives long before the stream ends
    deadline = time.monotonic() + 5
    while backend.stats()["cancelled"] != 1:
        assert time.monotonic() < deadline, backend.stats()
        time.sleep(0.05)
    assert backend.stats()["completed_streams"] == 0
    assert gw.metric("edgegw_in_flight_requests") == 0
    assert '"status":499' in gw.proc.log()


async def test_least_outstanding_prefers_the_faster_endpoint(make_backend: Any, make_gateway: Any) -> None:
    slow, fast = make_backend(name="slow"), make_backend(name="fast")
    gw = make_gateway(gateway_config([slow, fast]))
    slow.control(fault="slow:0.2")
    statuses = await _burst(gw, 120, 8)
    assert statuses.count(200) == 120
    served_slow, served_fast = slow.stats()["requests"], fast.stats()["requests"]
    assert served_slow + served_fast == 120
    assert served_fast > 3 * served_slow, (served_slow, served_fast)


async def test_sigterm_drains_in_flight_requests(fake_backend: Any, make_gateway: Any) -> None:
    import signal

    gw = make_gateway(gateway_config([fake_backend]))
    async with httpx.AsyncClient(base_url=gw.url, headers={**_auth(gw), "x-fake-fault": "slow:1"},
                                 timeout=10) as client:
        pending = asyncio.create_task(client.post("/v1/completions", json=BODY))
        await asyncio.sleep(0.3)
        gw.proc.signal(signal.SIGTERM)
        resp = await pending
    assert resp.status_code == 200
    # uvicorn re-raises the captured SIGTERM after a clean shutdown
    assert await asyncio.to_thread(gw.proc.popen.wait, 10) in (0, -signal.SIGTERM)
