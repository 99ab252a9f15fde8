"""The response cache through real gateway processes: hits, streams, single flight, isolation, bypass."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai

from testkit.harness import RedisServer
from tests.cache.conftest import cached_config

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3,
        "temperature": 0}
COMPLETION = {"model": "fake-model", "prompt": "hello", "max_tokens": 4, "temperature": 0}


def _flush(redis_server: RedisServer) -> None:
    import redis

    redis.Redis.from_url(redis_server.url).flushdb()


def _auth(gw: Any, sub: str = "alice", tenant: str | None = "t1") -> dict[str, str]:
    return {"authorization": f"Bearer {gw.token(sub, tenant=tenant)}"}


def _post(gw: Any, body: dict, headers: dict[str, str], path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.post(gw.url + path, json=body, headers=headers, timeout=10)


def test_miss_then_hit(store: RedisServer | None, fake_backend: Any, make_gateway: Any) -> None:
    gw = make_gateway(cached_config([fake_backend], store))
    auth = _auth(gw)
    first, second = _post(gw, CHAT, auth), _post(gw, CHAT, auth)
    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.headers["x-edgegw-cache"], second.headers["x-edgegw-cache"]) == ("MISS", "HIT")
    assert second.json() == first.json() and "age" in second.headers
    # Key order and per-user fields do not matter; the body does.
    reordered = {"user": "someone", **dict(reversed(list(CHAT.items())))}
    assert _post(gw, reordered, auth).headers["x-edgegw-cache"] == "HIT"
    assert _post(gw, {**CHAT, "max_tokens": 4}, auth).headers["x-edgegw-cache"] == "MISS"
    assert fake_backend.stats()["requests"] == 2
    assert gw.metric("edgegw_cache_requests_total", status="HIT") == 2


async def test_streamed_miss_is_stored_and_replayed(store: RedisServer | None, fake_backend: Any,
                                                    make_gateway: Any) -> None:
    gw = make_gateway(cached_config([fake_backend], store))
    token = gw.token("alice", tenant="t1")
    client = openai.AsyncOpenAI(base_url=gw.url + "/v1", api_key=token, max_retries=0)
    texts, statuses = [], []
    for _ in range(2):
        raw = await client.completions.with_raw_response.create(**COMPLETION, stream=True,
                                                                 stream_options={"include_usage": True})
        statuses.append(raw.headers["x-edgegw-cache"])
        chunks = [c async for c in raw.parse()]
        texts.append("".join(c.choices[0].text for c in chunks if c.choices))
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert statuses == ["MISS", "HIT"]
    assert texts[0] == texts[1] == "tok0 tok1 tok2 tok3 "
    # The assembled stream also answers the non-streaming request, and a chat stream replays too.
    resp = _post(gw, COMPLETION, {"authorization": f"Bearer {token}"}, "/v1/completions")
    assert resp.headers["x-edgegw-cache"] == "HIT" and resp.json()["choices"][0]["text"] == texts[0]
    replies = []
    for _ in range(2):
        stream = await client.chat.completions.create(**CHAT, stream=True)
        replies.append("".join([c.choices[0].delta.content or "" async for c in stream if c.choices]))
    assert replies[0] == replies[1] == "tok0 tok1 tok2 "
    assert fake_backend.stats()["requests"] == 2


async def test_single_flight(store: RedisServer | None, fake_backend: Any, make_gateway: Any) -> None:
    cfg = cached_config([fake_backend], store)
    gateways = [make_gateway(cfg) for _ in range(2 if store else 1)]  # across replicas with Redis
    headers = {**_auth(gateways[0]), "x-fake-fault": "slow:0.5"}
    async with httpx.AsyncClient(headers=headers, timeout=10) as client:
        responses = await asyncio.gather(*(client.post(gateways[i % len(gateways)].url + "/v1/chat/completions",
                                                       json=CHAT) for i in range(12)))
    assert all(r.status_code == 200 for r in responses)
    assert sorted(r.headers["x-edgegw-cache"] for r in responses) == ["HIT"] * 11 + ["MISS"]
    assert len({r.content for r in responses}) == 1
    assert fake_backend.stats()["requests"] == 1


def test_tenant_isolation(store: RedisServer | None, fake_backend: Any, make_gateway: Any) -> None:
    gw = make_gateway(cached_config([fake_backend], store))
    assert _post(gw, CHAT, _auth(gw, "a", "tenant-a")).headers["x-edgegw-cache"] == "MISS"
    assert _post(gw, CHAT, _auth(gw, "b", "tenant-b")).headers["x-edgegw-cache"] == "MISS"
    assert _post(gw, CHAT, _auth(gw, "a2", "tenant-a")).headers["x-edgegw-cache"] == "HIT"  # same tenant
    assert _post(gw, CHAT, _auth(gw, "c", None)).headers["x-edgegw-cache"] == "MISS"  # no tenant: per subject
    assert fake_backend.stats()["requests"] == 3


def test_no_store_no_cache_and_nondeterministic(redis_server: RedisServer, fake_backend: Any,
                                                make_gateway: Any) -> None:
    gw = make_gateway(cached_config([fake_backend], redis_server))
    _flush(redis_server)
    auth = _auth(gw)
    no_store = {**auth, "cache-control": "no-store"}
    assert _post(gw, CHAT, no_store).headers["x-edgegw-cache"] == "BYPASS"
    assert _post(gw, CHAT, auth).headers["x-edgegw-cache"] == "MISS"  # no-store stored nothing
    assert _post(gw, CHAT, no_store).headers["x-edgegw-cache"] == "BYPASS"  # nor read
    assert _post(gw, CHAT, {**auth, "cache-control": "no-cache"}).headers["x-edgegw-cache"] == "BYPASS"
    assert _post(gw, CHAT, auth).headers["x-edgegw-cache"] == "HIT"  # no-cache refreshed the entry
    assert fake_backend.stats()["requests"] == 4
    warm = {**CHAT, "temperature": 0.7}
    assert [_post(gw, warm, auth).headers["x-edgegw-cache"] for _ in range(2)] == ["BYPASS", "BYPASS"]
    default_temperature = {k: v for k, v in CHAT.items() if k != "temperature"}
    assert _post(gw, default_temperature, auth).headers["x-edgegw-cache"] == "BYPASS"
    assert fake_backend.stats()["requests"] == 7
    opted = {**auth, "x-edgegw-cache": "on"}
    assert [_post(gw, warm, opted).headers["x-edgegw-cache"] for _ in range(2)] == ["MISS", "HIT"]


def test_errors_and_oversized_answers_are_not_stored(fake_backend: Any, make_gateway: Any) -> None:
    cfg = cached_config([fake_backend], None, max_bytes=300)
    cfg["pools"][0]["outlier"]["consecutive_failures"] = 1000
    gw = make_gateway(cfg)
    auth = _auth(gw)
    assert _post(gw, CHAT, {**auth, "x-fake-fault": "500"}).status_code == 500
    assert _post(gw, CHAT, auth).headers["x-edgegw-cache"] == "MISS"
    big = {**CHAT, "max_tokens": 100}
    assert [_post(gw, big, auth).headers["x-edgegw-cache"] for _ in range(2)] == ["MISS", "MISS"]


def test_redis_down_bypasses(fake_backend: Any, make_gateway: Any) -> None:
    redis = RedisServer().start()
    gw = make_gateway(cached_config([fake_backend], redis))
    auth = _auth(gw)
    assert _post(gw, CHAT, auth).headers["x-edgegw-cache"] == "MISS"
    redis.stop()
    resp = _post(gw, CHAT, auth)
    assert resp.status_code == 200 and resp.headers["x-edgegw-cache"] == "BYPASS"
