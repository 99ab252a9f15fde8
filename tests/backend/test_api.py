"""The OpenAI endpoints of a real tiny-model backend, through the official `openai` client."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.backend.conftest import BackendProc

MODEL = "tiny-llama"


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer  # here, not at import: collecting the suite stays fast

    return AutoTokenizer.from_pretrained(tiny_model)


def test_health_and_models(tiny_backend: BackendProc, client: openai.OpenAI) -> None:
    health = httpx.get(tiny_backend.url + "/healthz").json()
    assert health["status"] == "ready" and health["model"] == MODEL
    assert {m.id for m in client.models.list().data} == {MODEL, "all-minilm-l6-v2"}


def test_completion_usage_is_exact(client: openai.OpenAI, tokenizer) -> None:
    prompt = "The quick brown fox"
    out = client.completions.create(model=MODEL, prompt=prompt, max_tokens=7, temperature=0, extra_body={
        "ignore_eos": True})
    assert out.object == "text_completion" and out.model == MODEL
    assert out.choices[0].finish_reason == "length"
    assert out.usage.prompt_tokens == len(tokenizer(prompt)["input_ids"])
    assert out.usage.completion_tokens == 7
    assert out.usage.total_tokens == out.usage.prompt_tokens + 7


def test_chat_uses_the_chat_template(client: openai.OpenAI, tokenizer) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    out = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=5, temperature=0)
    templated = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert out.object == "chat.completion"
    assert out.choices[0].message.role == "assistant"
    assert out.usage.prompt_tokens == len(tokenizer(templated, add_special_tokens=False)["input_ids"])
    assert out.choices[0].finish_reason in ("stop", "length")


def test_greedy_stream_matches_non_stream(client: openai.OpenAI) -> None:
    kwargs = dict(model=MODEL, messages=[{"role": "user", "content": "Stream me"}], max_tokens=12, temperature=0)
    whole = client.chat.completions.create(**kwargs)
    chunks = list(client.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == []
    streamed = chunks[-1].usage
    assert (streamed.prompt_tokens, streamed.completion_tokens) == (whole.usage.prompt_tokens, whole.usage.completion_tokens)
    # The second ask reuses the first one's prompt blocks (the prefix cache), the first has none of its own.
    assert whole.usage.prompt_tokens_details.cached_tokens == 0
    assert 0 < streamed.prompt_tokens_details.cached_tokens < streamed.prompt_tokens


def test_stream_wire_format_ends_with_done(tiny_backend: BackendProc) -> None:
    body = {"model": MODEL, "prompt": "abc", "max_tokens": 4, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", tiny_backend.url + "/v1/completions", json=body, timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    payloads = [json.loads(e[6:]) for e in events[:-1]]
    assert all(p["object"] == "text_completion" for p in payloads)
    assert payloads[-1]["choices"][0]["finish_reason"] == "length"


def test_seed_reproduces_and_n_gives_choices(client: openai.OpenAI) -> None:
    kwargs = dict(model=MODEL, prompt="Once upon", max_tokens=10, temperature=1.0, top_p=0.9, seed=1234)
    a = client.completions.create(**kwargs)
    b = client.completions.create(**kwargs)
    assert a.choices[0].text == b.choices[0].text
    many = client.completions.create(**{**kwargs, "n": 3})
    assert [c.index for c in many.choices] == [0, 1, 2]
    assert many.choices[0].text == a.choices[0].text


def test_stop_string_cuts_and_finishes_with_stop(client: openai.OpenAI) -> None:
    free = client.completions.create(model=MODEL, prompt="xyz", max_tokens=20, temperature=0,
                                     extra_body={"ignore_eos": True}).choices[0].text
    stop = free[3:5]
    assert len(stop) == 2, "the tiny model should produce at least 5 characters"
    out = client.completions.create(model=MODEL, prompt="xyz", max_tokens=20, temperature=0, stop=[stop],
                                    extra_body={"ignore_eos": True})
    assert out.choices[0].finish_reason == "stop"
    assert out.choices[0].text == free[: free.index(stop)]
    streamed = client.completions.create(model=MODEL, prompt="xyz", max_tokens=20, temperature=0, stop=stop,
                                         stream=True, extra_body={"ignore_eos": True})
    assert "".join(c.choices[0].text for c in streamed) == out.choices[0].text


def test_prompt_as_token_ids_and_batch_of_prompts(client: openai.OpenAI, tokenizer) -> None:
    ids = tokenizer("hello")["input_ids"]
    by_ids = client.completions.create(model=MODEL, prompt=ids, max_tokens=5, temperature=0)
    by_text = client.completions.create(model=MODEL, prompt=["hello", "other"], max_tokens=5, temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text
    assert len(by_text.choices) == 2 and by_text.usage.prompt_tokens == len(ids) + len(tokenizer("other")["input_ids"])


def test_metrics_have_vllm_names(tiny_backend: BackendProc, client: openai.OpenAI) -> None:
    before = tiny_backend.metric("vllm:generation_tokens_total")
    client.completions.create(model=MODEL, prompt="count me", max_tokens=3, temperature=0,
                              extra_body={"ignore_eos": True})
    assert tiny_backend.metric("vllm:generation_tokens_total") == before + 3
    text = httpx.get(tiny_backend.url + "/metrics").text
    for name in ("vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc",
                 "vllm:time_to_first_token_seconds_bucket", "vllm:inter_token_latency_seconds_bucket",
                 "vllm:e2e_request_latency_seconds_bucket", "vllm:request_success_total",
                 "edgegw_backend_requests_total"):
        assert name in text, name
    assert tiny_backend.metric("edgegw_backend_requests_total", endpoint="/v1/completions", status="200") >= 1
