"""Cache keys, cacheability and the SSE <-> JSON conversion, without processes."""

from __future__ import annotations

import orjson

from gateway.cache.config import CacheRule
from gateway.cache.keys import cache_directives, cache_key, cacheable
from gateway.cache.sse import assemble, replay_chunks
from gateway.cache.store import decode, encode
from gateway.config.schema import RouteConfig
from gateway.context import RequestContext

ROUTE = RouteConfig(name="r", paths=("/v1/chat/completions",))


def ctx(body: dict, headers: dict | None = None, tenant: str | None = "t1",
        path: str = "/v1/chat/completions") -> RequestContext:
    c = RequestContext(request_id="x", method="POST", path=path, headers=headers or {}, client_ip="1.2.3.4",
                       body_json=body, route=ROUTE, model=body.get("model"), tenant=tenant, subject="s")
    return c


def test_key_ignores_order_stream_and_user_but_not_tenant_or_content() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    same = {"temperature": 0, "stream": True, "user": "u1", "messages": body["messages"], "model": "m"}
    assert cache_key(ctx(body)) == cache_key(ctx(same))
    assert cache_key(ctx(body)) != cache_key(ctx(body, tenant="t2"))
    assert cache_key(ctx(body)) != cache_key(ctx({**body, "temperature": 0.0001}))
    assert cache_key(ctx(body)) != cache_key(ctx(body, path="/v1/completions"))


def test_cacheability() -> None:
    rule = CacheRule()
    assert cacheable(ctx({"temperature": 0}), rule)
    assert not cacheable(ctx({"temperature": 0.2}), rule)
    assert not cacheable(ctx({}), rule)  # the API's default temperature is 1
    assert cacheable(ctx({}, {"x-edgegw-cache": "on"}), rule)
    assert cacheable(ctx({"input": "x"}, path="/v1/embeddings"), rule)
    assert cacheable(ctx({"temperature": 1}), CacheRule(when="always"))
    assert not cacheable(ctx({"temperature": 0}), CacheRule(when="header"))
    assert cache_directives(ctx({}, {"cache-control": "no-store"})) == (False, False)
    assert cache_directives(ctx({}, {"cache-control": "max-age=0, no-cache"})) == (False, True)


def _sse(events: list[dict]) -> bytes:
    return b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def test_chat_stream_round_trip() -> None:
    stream = _sse([
        {"id": "c1", "created": 5, "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant"}}]},
        {"id": "c1", "created": 5, "model": "m", "choices": [{"index": 0, "delta": {"content": "Hel"}}]},
        {"id": "c1", "created": 5, "model": "m", "choices": [{"index": 0, "delta": {"content": "lo"},
                                                               "finish_reason": "stop"}]},
        {"id": "c1", "created": 5, "model": "m", "choices": [], "usage": {"prompt_tokens": 1,
                                                                         "completion_tokens": 2}},
    ])
    body = assemble("/v1/chat/completions", stream)
    assert body is not None
    data = orjson.loads(body)
    assert data["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello"},
                                "finish_reason": "stop"}]
    assert data["usage"]["completion_tokens"] == 2
    replayed = b"".join(replay_chunks("/v1/chat/completions", body, include_usage=True))
    assert orjson.loads(assemble("/v1/chat/completions", replayed) or b"") == data
    assert b'"usage"' not in b"".join(replay_chunks("/v1/chat/completions", body, include_usage=False))


def test_unreproducible_streams_are_not_cached() -> None:
    tool = _sse([{"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0}]}}]}])
    assert assemble("/v1/chat/completions", tool) is None
    unfinished = _sse([{"choices": [{"index": 0, "text": "x"}]}])[: -len(b"data: [DONE]\n\n")]
    assert assemble("/v1/completions", unfinished) is None


def test_entries_are_compressed() -> None:
    body = orjson.dumps({"choices": [{"text": "word " * 1000}]})
    entry = encode(body)
    assert len(entry) < len(body) / 10
    decoded = decode(entry)
    assert decoded is not None and decoded[0] == body
    assert decode(b"garbage-entry-xx") is None
