"""The seed's own client, replayed: the Open-AutoGLM phone agent's step request, through a real gateway
to a built-in backend serving a tiny GLM-4.1V under the pool's name `autoglm-phone-9b`. Once with the
openai SDK as the agent sends it (JSON, the screenshot as a PNG data: URL, streamed), once as
MessagePack with the PNG as raw bytes; both read the way the agent reads: content deltas, then usage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import msgpack
import openai
import pytest

from testkit.media_files import data_url, photo
from tests.backend.conftest import BackendProc, start_backend
from tests.conftest import GatewayProc, gateway_config, start_gateway

MODEL = "autoglm-phone-9b"
SYSTEM = "You are a phone-operating agent. Answer with do(action=...) or finish(message=...). " * 8
# The agent's sampling (phone_agent/model/client.py): every step the same.
SAMPLING = {"max_tokens": 3000, "temperature": 0.0, "top_p": 0.85, "frequency_penalty": 0.2}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewayProc, BackendProc]]:
    from gpu_backend.tiny_vlm import make_tiny_vlm

    tmp = tmp_path_factory.mktemp("phone")
    backend = start_backend(make_tiny_vlm(tmp / "tiny-glm4v", "glm4v"), "--served-model-name", MODEL,
                            name="phone-backend")
    config = gateway_config([])
    config["pools"][0].update(models=[MODEL], image_models=[MODEL], endpoints=[{"url": backend.url}])
    gateway = start_gateway(tmp, config)
    yield gateway, backend
    gateway.proc.stop()
    backend.stop()


def screenshot() -> bytes:
    return photo(42, 108, 240)  # a phone screen's 9:20 aspect, small


def test_the_agent_step_streams_through_the_gateway(stack: tuple[GatewayProc, BackendProc]) -> None:
    gateway, backend = stack
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=gateway.token(), max_retries=0)
    messages: list[Any] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(screenshot())}},
                                     {"type": "text", "text": "Task: open the settings app.\n\n** Screen Info **"}]},
    ]
    stream = client.chat.completions.create(model=MODEL, messages=messages, stream=True,
                                            stream_options={"include_usage": True}, **SAMPLING)
    content, usage, finish = "", None, None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            content += chunk.choices[0].delta.content
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
        if chunk.usage:
            usage = chunk.usage
    assert finish in ("stop", "length") and content
    assert usage is not None and usage.prompt_tokens > 40 and usage.completion_tokens >= 1
    # The same request straight to the backend, not streamed: the same greedy, penalised answer.
    direct = httpx.post(backend.url + "/v1/chat/completions", timeout=300,
                        json={"model": MODEL, "messages": messages, **SAMPLING}).json()
    assert direct["choices"][0]["message"]["content"] == content
    assert _counts(direct["usage"]) == (usage.prompt_tokens, usage.completion_tokens)
    # Asked again, the text before the screenshot (the system prompt) comes from the prefix cache.
    assert direct["usage"]["prompt_tokens_details"]["cached_tokens"] > 0

    # The same step as MessagePack, the screenshot as raw PNG bytes: the gateway turns it into the
    # data: URL the backend reads, and the stream is the same SSE.
    packed = {"model": MODEL, "stream": True, "stream_options": {"include_usage": True}, **SAMPLING,
              "messages": [messages[0], {"role": "user", "content": [
                  {"type": "image", "data": screenshot(), "mime_type": "image/png"}, messages[1]["content"][1]]}]}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", timeout=300,
                      content=msgpack.packb(packed, use_bin_type=True),
                      headers={"authorization": f"Bearer {gateway.token()}",
                               "content-type": "application/msgpack"}) as resp:
        assert resp.status_code == 200
        events = [json.loads(line[6:]) for line in resp.iter_lines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    assert text == content and _counts(events[-1]["usage"]) == _counts(direct["usage"])


def _counts(usage: dict[str, Any]) -> tuple[int, int]:
    return usage["prompt_tokens"], usage["completion_tokens"]


def test_the_pool_lists_the_model_as_taking_images(stack: tuple[GatewayProc, BackendProc]) -> None:
    gateway, backend = stack
    listed = httpx.get(gateway.url + "/v1/models", headers={"authorization": f"Bearer {gateway.token()}"}).json()
    assert {m["id"]: m.get("capabilities") for m in listed["data"]}[MODEL] == ["text", "image"]
    assert httpx.get(backend.url + "/v1/models").json()["data"][0]["capabilities"] == ["text", "image"]
