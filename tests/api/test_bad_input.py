"""Bad input gets a clear OpenAI-style error with the right status; nothing crashes the worker."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import gateway_config, start_fake_backend, start_gateway


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Any:
    backend = start_fake_backend()
    cfg = gateway_config([backend])
    cfg["server"]["max_body_bytes"] = 4096
    gateway = start_gateway(tmp_path_factory.mktemp("bad"), cfg)
    yield gateway
    gateway.proc.stop()
    backend.proc.stop()


def _post(gw: Any, path: str, content: bytes | None = None, json: Any = None) -> httpx.Response:
    return httpx.post(gw.url + path, content=content, json=json, timeout=10,
                      headers={"authorization": f"Bearer {gw.token()}", "content-type": "application/json"})


@pytest.mark.parametrize(("body", "status", "fragment"), [
    (b"{not json", 400, "not valid JSON"),
    (b"", 400, "empty"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "'model'"),
    (b'{"model": "fake-model"}', 400, "'messages'"),
    (b'{"model": 7, "messages": [{"role": "user", "content": "x"}]}', 400, "'model' must be a string"),
    (b'{"model": "fake-model", "messages": []}', 400, "must not be empty"),
    (b'{"model": "fake-model", "messages": ["hi"]}', 400, "messages[0]"),
    (b'{"model": "fake-model", "messages": [{"role": "user", "content": 5}]}', 400, "messages[0].content"),
    (b'{"model": "fake-model", "messages": [{"role": "user"}], "max_tokens": "9"}', 400, "'max_tokens'"),
    (b'{"model": "fake-model", "messages": [{"role": "user"}], "max_tokens": 0}', 400, "at least 1"),
    (b'{"model": "fake-model", "messages": [{"role": "user"}], "temperature": 9}', 400, "at most 2"),
    (b'{"model": "fake-model", "messages": [{"role": "user"}], "stream": "yes"}', 400, "'stream'"),
    (b'{"model": "nope", "messages": [{"role": "user"}]}', 404, "does not exist"),
])
def test_chat_body_errors(gw: Any, body: bytes, status: int, fragment: str) -> None:
    resp = _post(gw, "/v1/chat/completions", content=body)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert fragment in error["message"]
    assert set(error) == {"message", "type", "param", "code"}


def test_body_too_large(gw: Any) -> None:
    resp = _post(gw, "/v1/completions", json={"model": "fake-model", "prompt": "x" * 8000})
    assert resp.status_code == 413
    assert "4096" in resp.json()["error"]["message"]


def test_generate_and_embeddings_validation(gw: Any) -> None:
    assert "'prompt'" in _post(gw, "/v1/generate", json={"max_tokens": 3}).json()["error"]["message"]
    resp = _post(gw, "/v1/generate", json={"prompt": "x", "stream": True})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "stream"
    assert _post(gw, "/v1/embeddings", json={"model": "fake-model"}).status_code == 400


def test_unknown_paths_and_methods(gw: Any) -> None:
    resp = httpx.get(gw.url + "/v2/whatever")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"
    resp = httpx.get(gw.url + "/v1/chat/completions")
    assert resp.status_code == 405 and resp.headers["allow"] == "POST"
    resp = httpx.delete(gw.url + "/v1/models")
    assert resp.status_code == 405 and resp.json()["error"]["code"] == "method_not_allowed"


def test_worker_survives_garbage(gw: Any) -> None:
    for body in (b"\xff\xfe\x00", b'{"model": {"a": [' * 50, b"null", b"1e999999"):
        assert _post(gw, "/v1/completions", content=body).status_code == 400
    assert _post(gw, "/v1/completions", json={"model": "fake-model", "prompt": "ok"}).status_code == 200
