"""Image-text-to-text models in the built-in backend: tiny random GLM-4.1V, Qwen2.5-VL and Idefics3 models made
here, served by real `edgegw backend` processes, answer token for token what transformers' own
`generate` answers for the same messages and images, alone and batched with text-only requests."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.media_files import data_url, photo
from tests.backend.conftest import BackendProc, start_backend

ARCHS = ["glm4v", "qwen2_5_vl", "idefics3"]
TOKENS = 10


@pytest.fixture(scope="module", params=ARCHS)
def vlm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BackendProc, Any]]:
    from gpu_backend.tiny_vlm import make_tiny_vlm

    model_dir = make_tiny_vlm(tmp_path_factory.mktemp("vlm") / f"tiny-{request.param}", request.param)
    # GLM-4.1V runs in the default engine process (images cross its pipe), the others in the HTTP
    # process (`--engine thread`: one process to start, not two).
    engine = "process" if request.param == "glm4v" else "thread"
    backend = start_backend(model_dir, "--served-model-name", "tiny-vlm", "--limit-mm-per-prompt", "image=3",
                            "--engine", engine, name=f"vlm-{request.param}")
    yield backend, Reference(model_dir)
    backend.stop()


class Reference:
    """transformers' own path: AutoModelForImageTextToText.generate on the processor's inputs."""

    def __init__(self, model_dir: Path) -> None:
        from transformers import AutoModelForImageTextToText

        from gpu_backend.vlm import load_processor

        self.processor = load_processor(model_dir)
        self.model = AutoModelForImageTextToText.from_pretrained(model_dir).eval()

    def answer(self, messages: list[dict[str, Any]], max_tokens: int = TOKENS) -> tuple[str, int]:
        import torch
        from PIL import Image

        msgs = []
        for m in messages:
            content = m["content"]
            if isinstance(content, list):
                content = [{"type": "image", "image": Image.open(io.BytesIO(p["bytes"])).convert("RGB")}
                           if p["type"] == "image_url" else p for p in content]
            msgs.append({"role": m["role"], "content": content})
        inputs = self.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True,
                                                    return_dict=True, return_tensors="pt")
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False)
        new = out[0, inputs["input_ids"].shape[1]:]
        return self.processor.tokenizer.decode(new, skip_special_tokens=True), inputs["input_ids"].shape[1]


def image_part(data: bytes, mime: str = "image/png") -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": data_url(data, mime)}, "bytes": data}


def wire(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The messages as sent: without the test's own `bytes` copies of the images."""
    return [{**m, "content": [{k: v for k, v in p.items() if k != "bytes"} for p in m["content"]]}
            if isinstance(m["content"], list) else m for m in messages]


CASES = [
    [{"role": "system", "content": "You look at screens."},
     {"role": "user", "content": [image_part(photo(1, 60, 40)), {"type": "text", "text": "Tap what?"}]}],
    [{"role": "user", "content": [{"type": "text", "text": "two:"}, image_part(photo(2, 90, 30, "JPEG"), "image/jpeg"),
                                  image_part(photo(3, 56, 56, "WEBP"), "image/webp"), {"type": "text", "text": "same?"}]}],
    [{"role": "user", "content": "no image here, just text"}],
    [{"role": "user", "content": [image_part(photo(4, 112, 112))]},
     {"role": "assistant", "content": "a square"}, {"role": "user", "content": "and now?"}],
]


async def chat(backend: BackendProc, messages: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=120) as client:
        r = await client.post(backend.url + "/v1/chat/completions", json={
            "model": "tiny-vlm", "messages": wire(messages), "max_tokens": TOKENS, "temperature": 0, **fields})
    assert r.status_code == 200, r.text
    return r.json()


def test_greedy_matches_transformers_alone_and_batched(vlm: tuple[BackendProc, Reference]) -> None:
    backend, ref = vlm
    expected = [ref.answer(m) for m in CASES]
    alone = [asyncio.run(chat(backend, m)) for m in CASES]
    assert [(a["choices"][0]["message"]["content"], a["usage"]["prompt_tokens"]) for a in alone] == expected

    async def together() -> list[dict[str, Any]]:
        # Image and text-only requests in one continuous batch, twice over, plus plain text chats.
        extra = [[{"role": "user", "content": f"filler {i} " * i}] for i in range(1, 5)]
        return list(await asyncio.gather(*(chat(backend, m) for m in CASES * 2 + extra)))

    batched = asyncio.run(together())
    assert [b["choices"][0]["message"]["content"] for b in batched[:8]] == [e[0] for e in expected] * 2


def test_stream_stop_usage_and_capabilities(vlm: tuple[BackendProc, Reference]) -> None:
    backend, ref = vlm
    text, prompt_tokens = ref.answer(CASES[0])
    stream = backend.client().chat.completions.create(
        model="tiny-vlm", messages=wire(CASES[0]), max_tokens=TOKENS, temperature=0, stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    usage = chunks[-1].usage
    assert usage.prompt_tokens == prompt_tokens and usage.completion_tokens >= 1
    assert prompt_tokens > 20  # the image's placeholder tokens count as prompt tokens
    cut = text[2:4]
    if cut.strip():
        stopped = asyncio.run(chat(backend, CASES[0], stop=[cut]))["choices"][0]
        assert stopped["finish_reason"] == "stop" and stopped["message"]["content"] == text[:text.index(cut)]
    models = httpx.get(backend.url + "/v1/models").json()["data"]
    assert [(m["id"], m["capabilities"]) for m in models] == [("tiny-vlm", ["text", "image"])]


def _refused(backend: BackendProc, parts: list[dict[str, Any]], param: str, code: str) -> str:
    r = httpx.post(backend.url + "/v1/chat/completions", timeout=60, json={
        "model": "tiny-vlm", "max_tokens": 2, "messages": [{"role": "user", "content": parts}]})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert (err["param"], err["code"]) == (param, code), err
    assert param in err["message"]
    return err["message"]


@pytest.mark.parametrize("vlm", ["glm4v"], indirect=True)  # images are checked before any model code
def test_bad_images_are_400s_naming_the_part(vlm: tuple[BackendProc, Reference]) -> None:
    from testkit.media_files import gif, png_bomb

    backend, _ = vlm
    text = {"type": "text", "text": "look"}
    good = {"type": "image_url", "image_url": {"url": data_url(photo(5, 30, 30))}}
    corrupt = photo(6, 64, 64)[:200]
    assert "corrupt" in _refused(backend, [text, {"type": "image_url", "image_url": {"url": data_url(corrupt)}}],
                                 "messages[0].content[1]", "invalid_image")
    assert "400,000,000" in _refused(backend, [{"type": "image_url", "image_url": {"url": data_url(png_bomb())}}],
                                     "messages[0].content[0]", "image_too_large")
    assert "GIF" in _refused(backend, [text, good, {"type": "image_url", "image_url": {"url": data_url(gif())}}],
                             "messages[0].content[2]", "unsupported_image_format")
    assert "image/gif" in _refused(backend, [{"type": "image_url", "image_url": {"url": data_url(gif(), "image/gif")}}],
                                   "messages[0].content[0]", "unsupported_image_format")
    assert "at most 3 images" in _refused(backend, [text, *[good] * 100], "messages[0].content[4]", "too_many_images")
    assert "not enabled" in _refused(backend, [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}],
                                     "messages[0].content[0]", "remote_image_disabled")
    _refused(backend, [{"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}}],
             "messages[0].content[0]", "invalid_image")
    _refused(backend, [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}],
             "messages[0].content[0]", "unsupported_modality")
    assert httpx.get(backend.url + "/healthz").json()["status"] == "ready"
    ok = asyncio.run(chat(backend, [{"role": "user", "content": [text, {**good, "bytes": b""}]}]))
    assert ok["choices"][0]["finish_reason"] in ("stop", "length")


def test_prompts_are_keyed_by_image_content(tmp_path: Path) -> None:
    """For a prefix cache: the same text with other image bytes has the same ids but another key."""
    from gpu_backend.images import ImageLimits
    from gpu_backend.tiny_vlm import make_tiny_vlm
    from gpu_backend.vision_prompt import vision_prompt
    from gpu_backend.vlm import load_processor

    processor = load_processor(make_tiny_vlm(tmp_path / "glm", "glm4v"))

    def prompt(image: bytes) -> Any:
        body = {"messages": wire([{"role": "system", "content": "same system prompt"},
                                  {"role": "user", "content": [image_part(image), {"type": "text", "text": "go"}]}])}
        return asyncio.run(vision_prompt(processor, body, ImageLimits()))

    a, b, a_again = prompt(photo(7, 40, 40)), prompt(photo(8, 40, 40)), prompt(photo(7, 40, 40))
    assert a.ids == b.ids and a.cache_key() != b.cache_key() and a.cache_key() == a_again.cache_key()
    first = a.ids.index(processor.image_token_id)
    assert a.cache_key()[:first] == b.cache_key()[:first] == tuple(a.ids[:first])  # the text before is shared
    assert len(a.cache_key()) == len(a.ids)


def test_mm_processor_kwargs_bound_the_pixels_as_vllms_flag_does(tmp_path: Path) -> None:
    from gpu_backend.images import ImageLimits
    from gpu_backend.tiny_vlm import make_tiny_vlm
    from gpu_backend.vision_prompt import vision_prompt
    from gpu_backend.vlm import apply_processor_kwargs, load_processor

    processor = load_processor(make_tiny_vlm(tmp_path / "qwen", "qwen2_5_vl"))
    body = {"messages": wire([{"role": "user", "content": [image_part(photo(9, 112, 112))]}])}

    def image_tokens() -> int:
        prompt = asyncio.run(vision_prompt(processor, body, ImageLimits()))
        return prompt.ids.count(processor.image_token_id)

    assert image_tokens() == 16  # 112 x 112 px: 8 x 8 patches, merged 2 x 2
    apply_processor_kwargs(processor, {"max_pixels": 56 * 56})
    assert image_tokens() == 4
    with pytest.raises(ValueError, match="unsupported"):
        apply_processor_kwargs(processor, {"fps": 2})
