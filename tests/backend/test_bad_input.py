"""Bad requests get OpenAI-style 400/404 JSON naming the field, never a traceback."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.backend.conftest import BackendProc

MODEL = "tiny-llama"
CONTEXT = 4096  # the tiny model's context (conftest makes it with --context 4096)


def _error(backend: BackendProc, path: str, body: object, status: int = 400) -> dict:
    r = httpx.post(backend.url + path, json=body, timeout=30)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    return err


def test_prompt_longer_than_context_names_the_limit(tiny_backend: BackendProc, client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=MODEL, prompt="a" * (CONTEXT + 10), max_tokens=1)
    assert str(CONTEXT) in info.value.message
    err = _error(tiny_backend, "/v1/chat/completions",
                 {"model": MODEL, "messages": [{"role": "user", "content": "b" * CONTEXT}]})
    assert err["param"] == "messages" and err["code"] == "context_length_exceeded" and str(CONTEXT) in err["message"]


@pytest.mark.parametrize("max_tokens", [0, -3, CONTEXT + 1])
def test_max_tokens_out_of_range(tiny_backend: BackendProc, max_tokens: int) -> None:
    err = _error(tiny_backend, "/v1/completions", {"model": MODEL, "prompt": "hi", "max_tokens": max_tokens})
    assert err["param"] == "max_tokens"


def test_prompt_plus_max_tokens_over_context(tiny_backend: BackendProc) -> None:
    err = _error(tiny_backend, "/v1/completions", {"model": MODEL, "prompt": "x" * 100, "max_tokens": CONTEXT})
    assert err["param"] == "max_tokens" and str(CONTEXT) in err["message"]


@pytest.mark.parametrize(("field", "value"), [
    ("max_tokens", "ten"), ("max_tokens", 2.5), ("max_tokens", True), ("temperature", "hot"),
    ("temperature", 3), ("top_p", 0), ("top_p", "1"), ("seed", 1.5), ("stop", 7), ("stop", ["a", 1]),
    ("stream", "yes"), ("n", 0), ("stream_options", "all"), ("prompt", 12), ("prompt", []),
    ("model", 5),
])
def test_wrong_parameter_types_name_the_field(tiny_backend: BackendProc, field: str, value: object) -> None:
    body = {"model": MODEL, "prompt": "hi", "max_tokens": 2, field: value}
    err = _error(tiny_backend, "/v1/completions", body)
    assert err["param"] == field, err


@pytest.mark.parametrize(("messages", "param"), [
    ([], "messages"), ("hello", "messages"), (None, "messages"), ([{"content": "no role"}], "messages[0].role"),
    ([{"role": "user", "content": 5}], "messages[0].content"), (["text"], "messages[0]"),
])
def test_bad_messages(tiny_backend: BackendProc, messages: object, param: str) -> None:
    body: dict = {"model": MODEL, "max_tokens": 2}
    if messages is not None:
        body["messages"] = messages
    err = _error(tiny_backend, "/v1/chat/completions", body)
    assert err["param"] == param


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}])
    assert info.value.body["code"] == "model_not_found"


def test_invalid_json_and_non_object(tiny_backend: BackendProc) -> None:
    r = httpx.post(tiny_backend.url + "/v1/completions", content=b"{not json", timeout=10,
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    assert _error(tiny_backend, "/v1/completions", [1, 2])["code"] == "invalid_json"


def test_unknown_route_and_method_are_json(tiny_backend: BackendProc) -> None:
    r = httpx.get(tiny_backend.url + "/v1/nothing-here")
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.get(tiny_backend.url + "/v1/completions")
    assert r.status_code == 405 and "error" in r.json()


def test_bad_embedding_input(tiny_backend: BackendProc) -> None:
    err = _error(tiny_backend, "/v1/embeddings", {"model": "all-minilm-l6-v2", "input": [1, "x"]})
    assert err["param"] == "input"
    err = _error(tiny_backend, "/v1/embeddings", {"model": "all-minilm-l6-v2", "input": []})
    assert err["param"] == "input"
