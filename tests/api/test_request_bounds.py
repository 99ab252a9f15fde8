"""Bounds on what a request may ask of a backend, the same in JSON and MessagePack: `max_tokens` (and
`max_completion_tokens`) capped per route (`routes[].max_tokens_limit`), and a key repeated in one
MessagePack map refused like a repeated JSON key. Each a 400 naming the field, never forwarded."""

from __future__ import annotations

from typing import Any

import httpx
import msgpack
import pytest

from tests.conftest import gateway_config, start_fake_backend, start_gateway

MSGPACK = "application/msgpack"
HUGE = 2**64 - 1


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Any:
    backend = start_fake_backend()
    config = gateway_config([backend])
    config["routes"] = [{"name": "chat", "paths": ["/v1/chat/completions"]},
                        {"name": "short", "paths": ["/v1/completions"], "max_tokens_limit": 100}]
    gateway = start_gateway(tmp_path_factory.mktemp("bounds"), config)
    gateway.backend = backend
    yield gateway
    gateway.proc.stop()
    backend.proc.stop()


def post(gw: Any, path: str, body: dict[str, Any] | bytes, packed: bool) -> httpx.Response:
    headers = {"authorization": f"Bearer {gw.token()}", "x-edgegw-cache": "off"}
    if packed:
        data = body if isinstance(body, bytes) else msgpack.packb(body)
        return httpx.post(gw.url + path, content=data, headers={**headers, "content-type": MSGPACK}, timeout=10)
    if isinstance(body, bytes):
        return httpx.post(gw.url + path, content=body, headers={**headers, "content-type": "application/json"},
                          timeout=10)
    return httpx.post(gw.url + path, json=body, headers=headers, timeout=10)


def refused(gw: Any, path: str, body: dict[str, Any] | bytes, packed: bool, param: str | None, words: str) -> None:
    before = gw.backend.stats()["requests"]
    resp = post(gw, path, body, packed)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["param"] == param and words in error["message"], error
    assert gw.backend.stats()["requests"] == before


def chat(**extra: Any) -> dict[str, Any]:
    return {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], **extra}


def completion(**extra: Any) -> dict[str, Any]:
    return {"model": "fake-model", "prompt": "hi", **extra}


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_is_capped_by_a_safe_default(gw: Any, packed: bool, field: str) -> None:
    refused(gw, "/v1/chat/completions", chat(**{field: HUGE}), packed, field, "at most 131072")
    refused(gw, "/v1/chat/completions", chat(**{field: 131073}), packed, field, "at most 131072")
    assert post(gw, "/v1/chat/completions", chat(**{field: 4}), packed).status_code == 200


@pytest.mark.parametrize("packed", [False, True])
def test_a_route_sets_its_own_cap(gw: Any, packed: bool) -> None:
    refused(gw, "/v1/completions", completion(max_tokens=101), packed, "max_tokens", "at most 100 on this route")
    assert post(gw, "/v1/completions", completion(max_tokens=100), packed).status_code == 200



def test_repeated_keys_are_400_in_both_encodings(gw: Any) -> None:
    # {"model": "fake-model", "messages": [...], "model": "other"}: three entries, one key twice.
    packed = (b"\x83" + msgpack.packb("model") + msgpack.packb("fake-model")
              + msgpack.packb("messages") + msgpack.packb([{"role": "user", "content": "hi"}])
              + msgpack.packb("model") + msgpack.packb("other-model"))
    refused(gw, "/v1/chat/completions", packed, True, None, "repeats the key 'model'")
    nested = msgpack.packb({"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]})
    # The inner message map written by hand with `role` twice.
    inner = b"\x83" + b"".join(msgpack.packb(x) for x in ("role", "user", "content", "hi", "role", "system"))
    nested = nested.replace(msgpack.packb({"role": "user", "content": "hi"}), inner)
    refused(gw, "/v1/chat/completions", nested, True, None, "repeats the key 'role'")
    as_json = b'{"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "model": "x"}'
    refused(gw, "/v1/chat/completions", as_json, False, None, "repeats the key 'model'")
