"""MessagePack bodies through a real gateway to the fake backend: the same request model as JSON,
MessagePack answers on request, streams still SSE, one cache entry for a JSON request and its twin,
and every malformed body a 400 naming the field."""

from __future__ import annotations

import math
from typing import Any

import httpx
import msgpack
import openai
import pytest

from testkit.media_files import png

MSGPACK = "application/msgpack"


@pytest.fixture(scope="module")
def gw(media_gateway: Any) -> Any:
    return media_gateway


def post(gw: Any, path: str, body: Any, *, packed: bool = True, accept: str | None = None,
         content_type: str = MSGPACK, **headers: str) -> httpx.Response:
    hdrs = {"authorization": f"Bearer {gw.token()}", **headers}
    if accept:
        hdrs["accept"] = accept
    if packed:
        data = body if isinstance(body, bytes) else msgpack.packb(body, use_bin_type=True)
        hdrs["content-type"] = content_type
        return httpx.post(gw.url + path, content=data, headers=hdrs, timeout=10)
    return httpx.post(gw.url + path, json=body, headers=hdrs, timeout=10)


def error_of(resp: httpx.Response) -> dict[str, Any]:
    assert resp.status_code == 400, resp.text
    body = msgpack.unpackb(resp.content) if resp.headers["content-type"] == MSGPACK else resp.json()
    return body["error"]


CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 3}


@pytest.mark.parametrize("content_type", ["application/msgpack", "application/x-msgpack",
                                          "application/vnd.msgpack", "Application/MsgPack; charset=binary"])
def test_every_msgpack_type_decodes_to_the_json_request(gw: Any, content_type: str) -> None:
    packed = post(gw, "/v1/chat/completions", CHAT, content_type=content_type)
    plain = post(gw, "/v1/chat/completions", CHAT, packed=False)
    assert packed.status_code == plain.status_code == 200
    assert packed.headers["content-type"].startswith("application/json")  # no Accept: JSON as ever
    assert packed.json()["choices"] == plain.json()["choices"]
    assert gw.backend.stats()["last_headers"]["content-type"] == "application/json"


def test_every_inference_endpoint_takes_and_answers_msgpack(gw: Any) -> None:
    cases = [("/v1/chat/completions", CHAT, lambda a: a["choices"][0]["message"]["content"]),
             ("/v1/completions", {"model": "fake-model", "prompt": "hi", "max_tokens": 2},
              lambda a: a["choices"][0]["text"]),
             ("/v1/embeddings", {"model": "fake-model", "input": ["a", "bbb"]},
              lambda a: [d["embedding"][0] for d in a["data"]]),
             ("/v1/generate", {"prompt": "hi", "max_tokens": 2}, lambda a: a["generated_text"])]
    for path, body, answer in cases:
        resp = post(gw, path, body, accept=MSGPACK)
        assert resp.status_code == 200, (path, resp.text)
        assert resp.headers["content-type"] == MSGPACK
        assert int(resp.headers["content-length"]) == len(resp.content)
        as_json = post(gw, path, body, packed=False)
        assert answer(msgpack.unpackb(resp.content)) == answer(as_json.json())
    assert answer(msgpack.unpackb(resp.content)) == "tok0 tok1"


def test_accept_negotiation(gw: Any) -> None:
    def kind(accept: str) -> str:
        return post(gw, "/v1/completions", {"model": "fake-model", "prompt": "x", "max_tokens": 1},
                    packed=False, accept=accept).headers["content-type"]

    assert kind("application/x-msgpack") == MSGPACK
    assert kind("application/json;q=0.5, application/msgpack") == MSGPACK
    assert kind("application/msgpack;q=0.2, application/json") == "application/json"
    assert kind("application/msgpack;q=0") == "application/json"
    assert gw.backend.stats()["last_headers"]["accept"] == "application/json"  # the backend answers JSON


def test_streams_stay_server_sent_events(gw: Any) -> None:
    resp = post(gw, "/v1/chat/completions", {**CHAT, "stream": True}, accept=MSGPACK)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/event-stream"
    assert resp.text.startswith("data: {") and resp.text.endswith("data: [DONE]\n\n")


def test_cache_entry_is_shared_by_a_json_request_and_its_msgpack_twin(gw: Any) -> None:
    image = png(8, 8)
    import base64

    url = "data:image/png;base64," + base64.b64encode(image).decode()
    json_body = {"model": "vision-model", "temperature": 0, "max_tokens": 2,
                 "messages": [{"role": "user", "content": [{"type": "text", "text": "what is it?"},
                                                           {"type": "image_url", "image_url": {"url": url}}]}]}
    packed_body = {"model": "vision-model", "temperature": 0, "max_tokens": 2,
                   "messages": [{"role": "user", "content": [{"type": "text", "text": "what is it?"},
                                                             {"type": "image", "data": image,
                                                              "mime_type": "image/png"}]}]}
    first = post(gw, "/v1/chat/completions", json_body, packed=False)
    assert first.headers["x-edgegw-cache"] == "MISS"
    twin = post(gw, "/v1/chat/completions", packed_body, accept=MSGPACK)
    assert twin.headers["x-edgegw-cache"] == "HIT"
    assert msgpack.unpackb(twin.content)["choices"] == first.json()["choices"]
    other = dict(packed_body, messages=[{"role": "user", "content": [{"type": "image", "data": png(9, 9)}]}])
    assert post(gw, "/v1/chat/completions", other).headers["x-edgegw-cache"] == "MISS"


def test_errors_come_back_in_msgpack_when_asked(gw: Any) -> None:
    resp = post(gw, "/v1/chat/completions", {"model": "fake-model"}, accept=MSGPACK)
    assert resp.headers["content-type"] == MSGPACK
    assert error_of(resp)["param"] == "messages"


def _truncated() -> bytes:
    return msgpack.packb(CHAT)[:-3]


@pytest.mark.parametrize("body, param, words", [
    (_truncated(), None, "not valid MessagePack"),
    (msgpack.packb(CHAT) + b"\x01", None, "extra bytes"),
    (b"\xc1", None, "not valid MessagePack"),
    (msgpack.packb([1, 2]), None, "must be a JSON object"),
    (msgpack.packb({**CHAT, "model": b"fake-model"}, use_bin_type=True), "model", "must be a string"),
    (msgpack.packb({**CHAT, "max_tokens": "3"}), "max_tokens", "must be an integer"),
    (msgpack.packb({**CHAT, "messages": "hi"}), "messages", "must be an array"),
    (msgpack.packb({**CHAT, "temperature": math.nan}), "temperature", "finite"),
    (msgpack.packb({**CHAT, "user": b"\x00\x01"}, use_bin_type=True), "user", "must be a string"),
    (msgpack.packb({**CHAT, "metadata": {"k": b"v"}}, use_bin_type=True), "metadata.k", "binary"),
    (msgpack.packb({**CHAT, "metadata": {"t": msgpack.ExtType(5, b"x")}}), "metadata.t", "no JSON equivalent"),
    (msgpack.packb({**CHAT, "metadata": {b"k": 1}}, use_bin_type=True), "metadata", "keys must be strings"),
    (msgpack.packb({**CHAT, "messages": [{"role": "user", "content": [{"type": "image", "data": "iVBOR"}]}]}),
     "messages[0].content[0].data", "must be binary"),
])
def test_bad_msgpack_bodies_are_400_naming_the_field(gw: Any, body: bytes, param: str | None, words: str) -> None:
    before = gw.backend.stats()["requests"]
    err = error_of(post(gw, "/v1/chat/completions", body))
    assert words in err["message"] and err["param"] == param
    assert err["type"] == "invalid_request_error"
    assert gw.backend.stats()["requests"] == before


def test_non_string_keys_and_deep_nesting(gw: Any) -> None:
    err = error_of(post(gw, "/v1/chat/completions", msgpack.packb({1: 2, **CHAT})))
    assert "MessagePack" in err["message"]
    deep: Any = "x"
    for _ in range(100):
        deep = [deep]
    err = error_of(post(gw, "/v1/chat/completions", {**CHAT, "metadata": {"d": deep}}))
    assert "nests deeper" in err["message"]


def test_openai_sdk_still_works_on_json(gw: Any) -> None:
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.token(), max_retries=0)
    chat = client.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}],
                                          max_tokens=2)
    assert chat.choices[0].message.content == "tok0 tok1"
    import base64

    url = "data:image/png;base64," + base64.b64encode(png()).decode()
    seen = client.chat.completions.create(model="vision-model", max_tokens=2, messages=[
        {"role": "user", "content": [{"type": "text", "text": "what?"}, {"type": "image_url", "image_url": {"url": url}}]}])
    assert seen.choices[0].message.content.startswith("saw image_url:image/png:")
    with pytest.raises(openai.BadRequestError, match="text-only"):
        client.chat.completions.create(model="fake-model", max_tokens=2, messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])


def test_the_python_client_example_of_docs_api_md_works(gw: Any, tmp_path: Any) -> None:
    import os
    import re
    import subprocess
    import sys

    from testkit.harness import ROOT

    doc = (ROOT / "docs" / "api.md").read_text()
    code = re.search(r"<!-- example: msgpack-client -->\n```python\n(.*?)```", doc, re.S).group(1)  # type: ignore[union-attr]
    (tmp_path / "photo.png").write_bytes(png(6, 6))
    env = {**os.environ, "GATEWAY_URL": gw.url, "TOKEN": gw.token(), "MODEL": "vision-model"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("saw image_url:image/png:")
    env["MODEL"] = "fake-model"
    refused = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=60)
    assert "400: model fake-model is text-only" in refused.stderr
