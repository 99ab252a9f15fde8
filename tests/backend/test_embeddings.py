"""/v1/embeddings with the bundled all-MiniLM-L6-v2 (a real model: small, so it loads in the shared backend)."""

from __future__ import annotations

import math

import openai
import pytest

EMB = "all-minilm-l6-v2"


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_embeddings_shape_norm_and_usage(client: openai.OpenAI) -> None:
    out = client.embeddings.create(model=EMB, input=["first text", "second, longer text here"])
    assert [d.index for d in out.data] == [0, 1] and out.model == EMB
    for d in out.data:
        assert len(d.embedding) == 384
        assert math.isclose(math.sqrt(sum(x * x for x in d.embedding)), 1.0, rel_tol=1e-4)
    assert out.usage.prompt_tokens == out.usage.total_tokens > 4
    # The client asks for base64 by default; float must give the same vectors.
    floats = client.embeddings.create(model=EMB, input="first text", encoding_format="float")
    assert _cos(floats.data[0].embedding, out.data[0].embedding) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow
def test_minilm_ranks_semantic_similarity(client: openai.OpenAI) -> None:
    query, food, horse = (d.embedding for d in client.embeddings.create(model=EMB, input=[
        "A man is eating a piece of bread.", "A man is eating food.", "A man is riding a horse."]).data)
    assert _cos(query, food) > _cos(query, horse) + 0.1
