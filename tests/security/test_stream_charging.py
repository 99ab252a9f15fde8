"""Tokens are charged when delivered: a stream that ends early is charged what it sent (break #5).

Real gateway, fake backend and (for the Redis variant) redis-server processes on loopback.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from testkit.harness import RedisServer
from tests.conftest import gateway_config, with_redis

LIMIT = 1000


def tpm_config(backends: list[Any], redis: RedisServer | None) -> dict[str, Any]:
    cfg = gateway_config(backends)
    cfg["server"]["access_log"] = "off"
    cfg["routes"][0]["rate_limits"] = [{"name": "tpm", "key": "subject", "tokens_per_minute": LIMIT}]
    return with_redis(cfg, redis)


async def read_events_then_close(client: httpx.AsyncClient, url: str, body: dict, events: int) -> int | str:
    """Stream a completion, read `events` SSE events, then hang up. The status, or the tokens read."""
    async with client.stream("POST", url + "/v1/completions", json=body) as resp:
        if resp.status_code != 200:
            await resp.aread()
            return resp.status_code
        seen = 0
        async for line in resp.aiter_lines():
            if line.startswith("data: {"):
                seen += 1
                if seen >= events:
                    return f"read {seen}"  # leaving the block closes the connection before the end
        return "complete"


async def test_streams_closed_just_before_the_end_are_charged(store: RedisServer | None, make_backend: Any,
                                                              make_gateway: Any) -> None:
    # Each stream would send 200 tokens; the client hangs up after 180. Charged what they delivered
    # (~181 each, prompt included), five fit under 1,000 tokens a minute, not ten.
    backend = make_backend(token_delay=0.005)
    gw = make_gateway(tpm_config([backend], store))
    body = {"model": "fake-model", "prompt": "hi", "max_tokens": 200, "stream": True}
    outcomes = []
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {gw.token('streamer')}"}, timeout=20) as client:
        for _ in range(10):
            outcomes.append(await read_events_then_close(client, gw.url, body, 180))
            await asyncio.sleep(0.15)  # the gateway notices the hang-up and settles
    passed = [o for o in outcomes if isinstance(o, str)]
    assert 4 <= len(passed) <= 5, outcomes
    assert outcomes.count(429) == 10 - len(passed), outcomes
    assert all(o == "read 180" for o in passed), outcomes
    assert backend.stats()["completed_streams"] <= 1  # the hang-ups did end the streams early


async def test_stream_cut_by_the_backend_is_charged_what_it_sent(store: RedisServer | None, make_backend: Any,
                                                                 make_gateway: Any) -> None:
    backend = make_backend()
    cfg = tpm_config([backend], store)
    cfg["pools"][0]["outlier"]["consecutive_failures"] = 1000  # the cut streams must not eject it
    gw = make_gateway(cfg)
    headers = {"authorization": f"Bearer {gw.token('cut')}", "x-fake-fault": "die-mid-stream:290"}
    body = {"model": "fake-model", "prompt": "hi", "max_tokens": 300, "stream": True}
    statuses = []
    async with httpx.AsyncClient(headers=headers, timeout=20) as client:
        for _ in range(5):
            resp = await client.post(gw.url + "/v1/completions", json=body)
            statuses.append(resp.status_code)
            if resp.status_code == 200:
                assert resp.text.count('"text"') == 290 and "upstream_stream_error" in resp.text
    # ~291 tokens charged per cut stream: the fourth reservation of 301 does not fit in 1,000.
    assert statuses == [200, 200, 200, 429, 429], statuses


async def test_requests_that_never_reach_a_backend_are_released(make_backend: Any, make_gateway: Any) -> None:
    good = make_backend()
    cfg = tpm_config([good], None)
    # A second pool whose only endpoint listens nowhere: every request there fails before reaching it.
    cfg["pools"].append({"name": "dead", "models": ["dead-model"], "endpoints": [{"url": "http://127.0.0.1:9"}],
                         "health": {"interval_s": 0.2, "timeout_s": 0.5}})
    gw = make_gateway(cfg)
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {gw.token('unlucky')}"}, timeout=20) as client:
        for _ in range(5):  # 5 x 401 reserved would be over the limit, were they kept
            resp = await client.post(gw.url + "/v1/completions",
                                     json={"model": "dead-model", "prompt": "hi", "max_tokens": 400})
            assert resp.status_code in (502, 503), resp.text
        resp = await client.post(gw.url + "/v1/completions",
                                 json={"model": "fake-model", "prompt": "hi", "max_tokens": 400})
        assert resp.status_code == 200, resp.text


async def test_abandoned_request_keeps_its_reservation(store: RedisServer | None, make_backend: Any,
                                                       make_gateway: Any) -> None:
    """A client that leaves while the backend works on its (non-streamed) request is charged the
    reservation: the gateway cannot know what the backend spent, and leaving must not make it free."""
    backend = make_backend()
    gw = make_gateway(tpm_config([backend], store))
    auth = {"authorization": f"Bearer {gw.token('leaver')}"}
    body = {"model": "fake-model", "prompt": "hi", "max_tokens": 400}
    async with httpx.AsyncClient(headers={**auth, "x-fake-fault": "slow:2"}, timeout=0.4) as client:
        for _ in range(2):
            with pytest.raises(httpx.TimeoutException):
                await client.post(gw.url + "/v1/completions", json=body)
    await asyncio.sleep(0.3)
    async with httpx.AsyncClient(headers=auth, timeout=20) as client:
        resp = await client.post(gw.url + "/v1/completions", json=body)
    assert resp.status_code == 429, resp.text  # 2 x 401 kept: a third 401 does not fit
    assert resp.json()["error"]["code"] == "tokens_rate_limit_exceeded"


async def test_timed_out_request_keeps_its_reservation(make_backend: Any, make_gateway: Any) -> None:
    backend = make_backend()
    cfg = tpm_config([backend], None)
    cfg["pools"][0]["timeouts"] = {"non_stream_total_s": 0.3}
    cfg["pools"][0]["outlier"]["consecutive_failures"] = 1000
    gw = make_gateway(cfg)
    body = {"model": "fake-model", "prompt": "hi", "max_tokens": 400}
    async with httpx.AsyncClient(headers={"authorization": f"Bearer {gw.token('slow')}"}, timeout=20) as client:
        for _ in range(2):
            resp = await client.post(gw.url + "/v1/completions", json=body, headers={"x-fake-fault": "slow:2"})
            assert resp.status_code == 504 and resp.json()["error"]["code"] == "upstream_timeout"
        resp = await client.post(gw.url + "/v1/completions", json=body)
    assert resp.status_code == 429, resp.text
