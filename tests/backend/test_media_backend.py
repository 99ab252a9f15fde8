"""The built-in backend's models are text-only: media parts get a 400 that says so, naming the
model and the part, and `/v1/models` lists each model's input modalities under `capabilities`."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from testkit.media_files import png, wav
from tests.backend.conftest import BackendProc, start_backend

MODEL = "tiny-llama"


@pytest.fixture(scope="module")
def backend(tiny_model: Path) -> Iterator[BackendProc]:
    proc = start_backend(tiny_model, name="media-backend")
    yield proc
    proc.stop()


def test_media_parts_are_refused_as_text_only(backend: BackendProc) -> None:
    url = "data:image/png;base64," + base64.b64encode(png()).decode()
    parts = [
        ({"type": "image_url", "image_url": {"url": url}}, "image"),
        ({"type": "input_audio", "input_audio": {"data": base64.b64encode(wav()).decode(), "format": "wav"}}, "audio"),
    ]
    for part, kind in parts:
        resp = httpx.post(backend.url + "/v1/chat/completions", timeout=30, json={
            "model": MODEL, "max_tokens": 2,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "what?"}, part]}]})
        assert resp.status_code == 400
        err = resp.json()["error"]
        assert err["message"].startswith(f"model {MODEL} is text-only: it does not accept {kind} input")
        assert err["param"] == "messages[0].content[1]" and err["code"] == "unsupported_modality"
    with pytest.raises(openai.BadRequestError, match="text-only"):
        backend.client().chat.completions.create(model=MODEL, max_tokens=2, messages=[
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}])


def test_text_parts_still_work_and_models_list_capabilities(backend: BackendProc) -> None:
    out = backend.client().chat.completions.create(model=MODEL, max_tokens=2, messages=[
        {"role": "user", "content": [{"type": "text", "text": "hello"}]}])
    assert out.choices[0].finish_reason in ("length", "stop")
    models = httpx.get(backend.url + "/v1/models").json()["data"]
    assert [(m["id"], m["capabilities"]) for m in models] == [(MODEL, ["text"])]
