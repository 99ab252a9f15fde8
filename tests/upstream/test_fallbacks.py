"""Model aliases, fallbacks across pools and models, and context windows: real gateways, fake backends.

Pools: `a` serves `phone` (the backend calls it AutoGLM-Phone-9B, window 512 tokens, 8 bytes a token
at most), falling back to `phone` in pool `b` on failures and to `phone-long` (pool `long`) on an
over-long prompt; `b` also serves `short` (window 64, no fallbacks).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import msgpack
import orjson
import pytest

from tests.conftest import gateway_config

FAILURES = ["no_healthy_endpoint", "upstream_error", "overloaded", "first_byte_timeout"]


def _config(a: Any, b: Any, long: Any, **route: Any) -> dict[str, Any]:
    cfg = gateway_config([a])
    base = cfg["pools"][0]
    cfg["pools"] = [
        {**base, "name": "a", "models": [
            {"name": "phone", "backend_name": "AutoGLM-Phone-9B", "context_length": 512, "max_token_bytes": 8,
             "fallbacks": [{"model": "phone", "pool": "b", "when": FAILURES},
                           {"model": "phone-long", "when": ["context_length"]}]}],
         "retries": {"attempts": 0}, "timeouts": {"first_byte_s": 1.0, "non_stream_total_s": 2.0}},
        {**base, "name": "b", "endpoints": [{"url": b.url}],
         "models": [{"name": "phone", "backend_name": "phone-vllm"},
                    {"name": "short", "context_length": 64, "max_token_bytes": 4}]},
        {**base, "name": "long", "endpoints": [{"url": long.url}],
         "models": [{"name": "phone-long", "backend_name": "long-ctx", "context_length": 100000}]},
    ]
    cfg["routes"][0].update(route)
    return cfg


@pytest.fixture
def trio(make_backend: Any, make_gateway: Any) -> tuple[Any, Any, Any, Any]:
    a, b, long = make_backend(name="a"), make_backend(name="b"), make_backend(name="long")
    return make_gateway(_config(a, b, long)), a, b, long


def _post(gw: Any, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", json=body,
                      headers={"authorization": f"Bearer {gw.token()}", **headers}, timeout=20)


def _chat(content: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"model": "phone", "messages": [{"role": "user", "content": content}], "max_tokens": 3, **extra}


def _events(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line[6:]) for line in text.splitlines()
            if line.startswith("data: {")]


def test_alias_rewritten_both_ways_json_and_stream(trio: Any) -> None:
    gw, a, b, _ = trio
    a.control(fault="rename:some-other-internal-name")  # the backend answers with yet another name
    resp = _post(gw, _chat())
    assert resp.status_code == 200, resp.text
    assert a.stats()["last_model"] == "AutoGLM-Phone-9B"
    assert resp.json()["model"] == "phone" and resp.headers["x-edgegw-served-model"] == "phone"
    assert "AutoGLM" not in resp.text and "internal" not in resp.text
    resp = _post(gw, _chat(stream=True, stream_options={"include_usage": True}))
    events = _events(resp.text)
    assert resp.status_code == 200 and len(events) >= 4 and resp.text.rstrip().endswith("data: [DONE]")
    assert {e["model"] for e in events} == {"phone"}, resp.text
    assert "internal" not in resp.text and "AutoGLM" not in resp.text
    resp = httpx.post(gw.url + "/v1/generate", json={"model": "phone", "prompt": "hi", "max_tokens": 2},
                      headers={"authorization": f"Bearer {gw.token()}"}, timeout=20)
    assert resp.status_code == 200 and resp.json()["model"] == "phone" and a.stats()["last_model"] == "AutoGLM-Phone-9B"
    assert b.stats()["requests"] == 0


def test_alias_rewritten_in_messagepack(trio: Any) -> None:
    gw, a, _, _ = trio
    a.control(fault="rename:AutoGLM-Phone-9B")
    headers = {"authorization": f"Bearer {gw.token()}", "content-type": "application/msgpack",
               "accept": "application/msgpack"}
    resp = httpx.post(gw.url + "/v1/chat/completions", content=msgpack.packb(_chat()), headers=headers, timeout=20)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/msgpack")
    assert msgpack.unpackb(resp.content)["model"] == "phone"
    assert a.stats()["last_model"] == "AutoGLM-Phone-9B"
    resp = httpx.post(gw.url + "/v1/chat/completions", content=msgpack.packb(_chat(stream=True)), headers=headers,
                      timeout=20)
    assert resp.status_code == 200 and {e["model"] for e in _events(resp.text)} == {"phone"}


def test_models_lists_public_names(trio: Any) -> None:
    gw = trio[0]
    data = httpx.get(gw.url + "/v1/models", headers={"authorization": f"Bearer {gw.token()}"}).json()["data"]
    assert sorted(m["id"] for m in data) == ["phone", "phone-long", "short"]


def test_pool_a_down_served_by_b(trio: Any) -> None:
    gw, a, b, _ = trio
    a.control(health=503)
    deadline = time.monotonic() + 10
    while httpx.get(gw.url + "/readyz").json()["pools"]["a"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    resp = _post(gw, _chat())
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "phone" and resp.headers["x-edgegw-served-model"] == "phone"
    assert b.stats()["last_model"] == "phone-vllm" and a.stats()["requests"] == 0
    assert gw.metric("edgegw_model_fallbacks_total", from_model="phone", to_model="phone",
                     reason="no_healthy_endpoint") == 1


def test_a_answering_429_served_by_b(trio: Any) -> None:
    gw, a, b, _ = trio
    a.control(fault="429")
    resp = _post(gw, _chat())
    assert resp.status_code == 200 and resp.json()["model"] == "phone"
    assert a.stats()["requests"] == 1 and b.stats()["requests"] == 1
    assert gw.metric("edgegw_model_fallbacks_total", reason="overloaded") == 1


def test_stream_falls_back_before_its_first_byte(trio: Any) -> None:
    gw, a, b, _ = trio
    a.control(fault="die-mid-stream:0")  # headers, then the connection drops before any event
    resp = _post(gw, _chat(stream=True))
    assert resp.status_code == 200 and "event: error" not in resp.text
    events = _events(resp.text)
    assert [e["choices"][0]["delta"].get("content") for e in events][:3] == ["tok0 ", "tok1 ", "tok2 "]
    assert {e["model"] for e in events} == {"phone"} and b.stats()["completed_streams"] == 1
    assert gw.metric("edgegw_model_fallbacks_total", reason="upstream_error") == 1


def test_first_byte_timeout_served_by_b(trio: Any) -> None:
    gw, a, b, _ = trio
    a.control(fault="stall")
    started = time.monotonic()
    resp = _post(gw, _chat(stream=True))
    assert resp.status_code == 200 and {e["model"] for e in _events(resp.text)} == {"phone"}
    assert time.monotonic() - started < 5 and b.stats()["completed_streams"] == 1
    assert gw.metric("edgegw_model_fallbacks_total", reason="first_byte_timeout") == 1


def test_stream_failing_after_its_first_byte_does_not_fall_back(trio: Any) -> None:
    gw, a, b, _ = trio
    a.control(fault="die-mid-stream:2")
    resp = _post(gw, _chat(stream=True))
    assert resp.status_code == 200
    assert [e["choices"][0]["delta"]["content"] for e in _events(resp.text) if "choices" in e] == ["tok0 ", "tok1 "]
    assert "event: error" in resp.text and "upstream_stream_error" in resp.text
    assert resp.text.rstrip().endswith("data: [DONE]") and b.stats()["requests"] == 0


def test_over_long_prompt_goes_to_the_long_context_model(trio: Any) -> None:
    gw, a, _, long = trio
    resp = _post(gw, _chat("x" * (8 * 512)))  # at least 512 tokens: no room left in a 512 window
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"] == "phone-long" and resp.headers["x-edgegw-served-model"] == "phone-long"
    assert a.stats()["requests"] == 0 and long.stats()["last_model"] == "long-ctx"
    assert gw.metric("edgegw_model_fallbacks_total", from_model="phone", to_model="phone-long",
                     reason="context_length") == 1
    # On the border (at most 509 tokens + max_tokens 3 fit 512) the model itself is asked.
    resp = _post(gw, _chat("x" * (8 * 509)))
    assert resp.status_code == 200 and resp.json()["model"] == "phone" and a.stats()["requests"] == 1


def test_over_long_prompt_without_fallback_is_refused_before_any_backend(trio: Any) -> None:
    gw, _, b, _ = trio
    resp = _post(gw, {"model": "short", "messages": [{"role": "user", "content": "y" * 4 * 64}]})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "context_length_exceeded" and b.stats()["requests"] == 0
    resp = _post(gw, {"model": "short", "messages": [{"role": "user", "content": "y" * 4 * 60}], "max_tokens": 8})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "max_tokens"
    resp = _post(gw, {"model": "short", "messages": [{"role": "user", "content": "y" * 4 * 60}], "max_tokens": 4})
    assert resp.status_code == 200 and b.stats()["requests"] == 1


def test_every_hop_failing_answers_the_last_error_labelled_never_500(trio: Any) -> None:
    gw, a, b, _ = trio
    a.control(fault="429")
    b.control(fault="503")
    resp = _post(gw, _chat())
    assert resp.status_code == 503, resp.text
    assert "every model tried failed (phone, phone)" in resp.json()["error"]["message"]
    assert resp.headers["x-edgegw-tried-models"] == "phone,phone"
    a.control(fault="500")
    b.control(fault="500")
    resp = _post(gw, _chat())
    assert resp.status_code == 502 and resp.json()["error"]["code"] == "upstream_500"


def test_fallbacks_never_bypass_model_permissions_or_limits(make_backend: Any, make_gateway: Any) -> None:
    a, b, long = make_backend(name="a"), make_backend(name="b"), make_backend(name="long")
    limit = {"name": "per-model", "key": ["subject", "model"], "requests_per_minute": 2}
    gw = make_gateway(_config(a, b, long, rate_limits=[limit]))
    narrow = gw.token(models=["phone"])
    resp = httpx.post(gw.url + "/v1/chat/completions", json=_chat("x" * 8 * 512),
                      headers={"authorization": f"Bearer {narrow}"}, timeout=20)
    assert resp.status_code == 403 and resp.json()["error"]["code"] == "model_forbidden"
    assert long.stats()["requests"] == 0
    for _ in range(2):  # phone-long's bucket is full...
        assert _post(gw, {**_chat(), "model": "phone-long"}).status_code == 200
    resp = _post(gw, _chat("x" * 8 * 512))  # ...so phone may not fall back to it
    assert resp.status_code == 429 and "every model tried failed (phone, phone-long)" in resp.text
    assert long.stats()["requests"] == 2 and a.stats()["requests"] == 0


def test_route_fallbacks_replace_the_models_own(make_backend: Any, make_gateway: Any) -> None:
    a, b, long = make_backend(name="a"), make_backend(name="b"), make_backend(name="long")
    gw = make_gateway(_config(a, b, long, fallbacks=[{"model": "phone-long"}]))
    a.control(fault="503")
    resp = _post(gw, _chat())
    assert resp.status_code == 200 and resp.json()["model"] == "phone-long" and b.stats()["requests"] == 0
