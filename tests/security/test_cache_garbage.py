"""The cache stores only good answers (break #7): a sick backend's garbage passes through, unstored.

Real gateway, fake backend (its `bad:` and `bad-stream:` faults) and redis-server processes.
"""

from __future__ import annotations

from typing import Any

import httpx

from testkit.fakes.backend import BAD_ANSWERS, BAD_STREAMS
from testkit.harness import RedisServer
from tests.cache.conftest import cached_config


def _gateway(store: RedisServer | None, backend: Any, make_gateway: Any) -> tuple[Any, dict[str, str]]:
    cfg = cached_config([backend], store)
    cfg["pools"][0]["outlier"]["consecutive_failures"] = 1000  # garbage must not eject the only backend
    gw = make_gateway(cfg)
    return gw, {"authorization": f"Bearer {gw.token('alice', tenant='t1')}"}


def test_garbage_answers_pass_through_unstored(store: RedisServer | None, fake_backend: Any,
                                               make_gateway: Any) -> None:
    gw, auth = _gateway(store, fake_backend, make_gateway)
    with httpx.Client(base_url=gw.url, headers=auth, timeout=10) as client:
        for kind, (status, content_type, payload) in BAD_ANSWERS.items():
            body = {"model": "fake-model", "prompt": f"garbage {kind}", "max_tokens": 2, "temperature": 0}
            for _ in range(2):  # the second is no HIT: the first was not stored
                resp = client.post("/v1/completions", json=body, headers={"x-fake-fault": f"bad:{kind}"})
                assert (resp.status_code, resp.headers["x-edgegw-cache"]) == (status, "MISS"), kind
                assert resp.content == payload and resp.headers["content-type"].startswith(content_type.decode())
            # A good answer to the same request is then stored and served as usual.
            statuses = [client.post("/v1/completions", json=body).headers["x-edgegw-cache"] for _ in range(2)]
            assert statuses == ["MISS", "HIT"], kind
    assert fake_backend.stats()["requests"] == 3 * len(BAD_ANSWERS)


def test_incomplete_or_broken_streams_are_not_stored(store: RedisServer | None, fake_backend: Any,
                                                     make_gateway: Any) -> None:
    gw, auth = _gateway(store, fake_backend, make_gateway)
    with httpx.Client(base_url=gw.url, headers=auth, timeout=10) as client:
        for kind in BAD_STREAMS:
            for path, prompt in (("/v1/completions", {"prompt": kind}),
                                 ("/v1/chat/completions", {"messages": [{"role": "user", "content": kind}]})):
                body = {"model": "fake-model", **prompt, "max_tokens": 3, "temperature": 0, "stream": True}
                for _ in range(2):
                    resp = client.post(path, json=body, headers={"x-fake-fault": f"bad-stream:{kind}"})
                    assert (resp.status_code, resp.headers["x-edgegw-cache"]) == (200, "MISS"), (kind, path)
                    assert "tok2" in resp.text  # passed through as the backend sent it
                # Streamed or not, the request then gets a fresh answer, which is stored.
                assert client.post(path, json={**body, "stream": False}).headers["x-edgegw-cache"] == "MISS"
                resp = client.post(path, json=body)
                assert resp.headers["x-edgegw-cache"] == "HIT" and "data: [DONE]" in resp.text, (kind, path)
    assert fake_backend.stats()["requests"] == 3 * 2 * len(BAD_STREAMS)
