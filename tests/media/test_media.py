"""Media parts through a real gateway to a fake multimodal backend that decodes what it receives:
binary MessagePack parts arrive as standard OpenAI parts, JSON parts pass unchanged, and every bad
part (lying MIME type, unknown bytes, too large, too many, not allowed here, text-only model) is a
400 naming the field, refused before anything is forwarded."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import httpx
import msgpack
import pytest

from testkit.media_files import gif, png, wav

MSGPACK = "application/msgpack"


@pytest.fixture(scope="module")
def gw(media_gateway: Any) -> Any:
    return media_gateway


def chat(gw: Any, parts: list[dict[str, Any]], model: str = "vision-model", packed: bool = True) -> httpx.Response:
    body = {"model": model, "max_tokens": 2, "messages": [{"role": "user", "content": parts}]}
    headers = {"authorization": f"Bearer {gw.token()}", "x-edgegw-cache": "off", "cache-control": "no-store"}
    if packed:
        headers["content-type"] = MSGPACK
        return httpx.post(gw.url + "/v1/chat/completions", content=msgpack.packb(body, use_bin_type=True),
                          headers=headers, timeout=10)
    return httpx.post(gw.url + "/v1/chat/completions", json=body, headers=headers, timeout=10)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def refused(gw: Any, parts: list[dict[str, Any]], param: str, words: str, **kwargs: Any) -> None:
    before = gw.backend.stats()["requests"]
    resp = chat(gw, parts, **kwargs)
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["param"] == param and words in err["message"], err
    assert gw.backend.stats()["requests"] == before  # refused before forwarding


def test_binary_image_and_audio_arrive_as_openai_parts(gw: Any) -> None:
    image, audio = png(16, 16), wav()
    resp = chat(gw, [{"type": "text", "text": "what is this?"},
                     {"type": "image", "data": image, "mime_type": "image/png"},
                     {"type": "input_audio", "data": audio, "format": "wav"}])
    assert resp.status_code == 200, resp.text
    seen = gw.backend.stats()["last_media"]
    assert seen == [{"kind": "image_url", "mime": "image/png", "bytes": len(image), "sha256": digest(image)},
                    {"kind": "input_audio", "mime": "audio/wav", "bytes": len(audio), "sha256": digest(audio)}]
    assert resp.json()["choices"][0]["message"]["content"].startswith("saw image_url:image/png:")


def test_json_openai_parts_pass_unchanged_and_answer_like_msgpack(gw: Any) -> None:
    image, audio = png(12, 12), wav(400)
    as_json = chat(gw, [{"type": "image_url", "image_url": {"url": "data:image/png;base64,"
                                                            + base64.b64encode(image).decode()}},
                        {"type": "input_audio", "input_audio": {"data": base64.b64encode(audio).decode(),
                                                                "format": "wav"}}], packed=False)
    as_msgpack = chat(gw, [{"type": "image", "data": image}, {"type": "input_audio", "data": audio, "format": "wav"}])
    assert as_json.status_code == as_msgpack.status_code == 200
    assert as_json.json()["choices"] == as_msgpack.json()["choices"]


def test_a_mime_type_that_lies_is_refused(gw: Any) -> None:
    refused(gw, [{"type": "image", "data": png(), "mime_type": "image/jpeg"}],
            "messages[0].content[0].mime_type", "says image/jpeg but the bytes are image/png")
    refused(gw, [{"type": "input_audio", "data": png(), "format": "wav"}],
            "messages[0].content[0].format", "not a recognised audio format")
    url = "data:image/jpeg;base64," + base64.b64encode(png()).decode()
    refused(gw, [{"type": "image_url", "image_url": {"url": url}}], "messages[0].content[0].image_url.url",
            "says image/jpeg", packed=False)
    refused(gw, [{"type": "image", "data": b"not an image at all"}], "messages[0].content[0].data",
            "not a recognised image format")


def test_a_type_the_route_does_not_accept_is_refused(gw: Any) -> None:
    refused(gw, [{"type": "image", "data": gif(), "mime_type": "image/gif"}],
            "messages[0].content[0].mime_type", "image/gif is not accepted on this route")


def test_too_much_media_is_refused(gw: Any) -> None:
    refused(gw, [{"type": "image", "data": png(pad_bytes=200_000)}, {"type": "image", "data": png(pad_bytes=120_000)}],
            "messages[0].content[1]", "exceed 300000 bytes")
    refused(gw, [{"type": "image", "data": png()}] * 4, "messages[0].content[3]", "too many media parts")


def test_malformed_parts_name_the_field(gw: Any) -> None:
    refused(gw, [{"type": "image", "data": b""}], "messages[0].content[0].data", "empty")
    refused(gw, [{"type": "input_audio", "data": wav(), "format": "ogg"}], "messages[0].content[0].format",
            "must be one of")
    refused(gw, [{"type": "image_url", "image_url": {"url": "data:image/png,raw"}}],
            "messages[0].content[0].image_url.url", "base64 data URL", packed=False)
    refused(gw, [{"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@@not-base64"}}],
            "messages[0].content[0].image_url.url", "not valid base64", packed=False)
    refused(gw, [{"type": "input_audio", "input_audio": {"data": 5, "format": "wav"}}],
            "messages[0].content[0].input_audio.data", "base64 string", packed=False)


def test_a_text_only_model_is_refused_media_before_forwarding(gw: Any) -> None:
    refused(gw, [{"type": "text", "text": "hi"}, {"type": "image", "data": png()}], "messages[0].content[1]",
            "model fake-model is text-only: it does not accept image input", model="fake-model")
    refused(gw, [{"type": "input_audio", "data": wav(), "format": "wav"}], "messages[0].content[0]",
            "model eye-model does not accept audio input", model="eye-model")
    ok = chat(gw, [{"type": "image", "data": png()}], model="eye-model")
    assert ok.status_code == 200


def test_the_body_limit_makes_room_for_base64_media_but_not_for_text(gw: Any) -> None:
    image = png(pad_bytes=150_000)  # ~200 KB of base64 in JSON, over server.max_body_bytes (64 KiB)
    url = "data:image/png;base64," + base64.b64encode(image).decode()
    resp = chat(gw, [{"type": "image_url", "image_url": {"url": url}}], packed=False)
    assert resp.status_code == 200, resp.text
    assert gw.backend.stats()["last_media"][0]["sha256"] == digest(image)
    too_long = chat(gw, [{"type": "text", "text": "x" * 70_000}], packed=False)
    assert too_long.status_code == 413
    both = chat(gw, [{"type": "text", "text": "x" * 70_000}, {"type": "image_url", "image_url": {"url": url}}],
                packed=False)
    assert both.status_code == 413 and "besides its media" in both.json()["error"]["message"]


def test_models_list_says_what_each_model_accepts(gw: Any) -> None:
    data = httpx.get(gw.url + "/v1/models", headers={"authorization": f"Bearer {gw.token()}"}).json()["data"]
    caps = {m["id"]: m["capabilities"] for m in data}
    assert caps == {"fake-model": ["text"], "vision-model": ["text", "image", "audio"], "eye-model": ["text", "image"]}


def test_edgegw_ask_sends_files_as_msgpack(gw: Any, tmp_path: Any) -> None:
    import subprocess

    from testkit.harness import EDGEGW, ROOT

    image, audio = tmp_path / "photo.png", tmp_path / "voice.wav"
    image.write_bytes(png(10, 10))
    audio.write_bytes(wav())
    env = {"GATEWAY_URL": gw.url, "TOKEN": gw.token(), "PATH": "/usr/bin:/bin"}

    def ask(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*EDGEGW, "ask", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    done = ask("--image", str(image), "--audio", str(audio), "what is this?")  # picks vision-model
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"saw image_url:image/png:{image.stat().st_size}:")
    assert gw.backend.stats()["last_media"][1]["sha256"] == digest(audio.read_bytes())
    assert ask("--json", "--model", "eye-model", "--image", str(image), "hm?").stdout.startswith("saw image_url")
    refused = ask("--model", "fake-model", "--image", str(image), "what?")
    assert refused.returncode == 1 and "model fake-model is text-only" in refused.stderr
    assert ask("--image", str(audio), "what?").returncode == 2  # not an image: refused before sending


def test_an_escaped_part_type_is_still_checked(gw: Any) -> None:
    url = "data:image/png;base64," + base64.b64encode(png()).decode()
    part = '{"type": "image\\u005furl", "image\\u005furl": {"url": "URL"}}'.replace("URL", url)
    raw = '{"model": "fake-model", "max_tokens": 2, "messages": [{"role": "user", "content": [' + part + ']}]}'
    before = gw.backend.stats()["requests"]
    resp = httpx.post(gw.url + "/v1/chat/completions", content=raw, timeout=10, headers={
        "authorization": f"Bearer {gw.token()}", "content-type": "application/json"})
    assert resp.status_code == 400 and "text-only" in resp.json()["error"]["message"]
    assert gw.backend.stats()["requests"] == before
