"""The prefix cache on real tiny-model backends: same greedy tokens with and without it, alone and in a
batch; cached tokens in usage (streamed too) and the vLLM counters; the memory bound evicts LRU blocks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.backend.conftest import BackendProc, start_backend

MODEL = "tiny-llama"
BLOCK = 16  # gpu_backend.prefix_cache.BLOCK_TOKENS


@pytest.fixture(scope="module")
def uncached_backend(tiny_model: Path) -> Iterator[BackendProc]:
    backend = start_backend(tiny_model, "--prefix-cache-mb", "0", name="no-prefix-cache")
    yield backend
    backend.stop()


def _chat(system: str, question: str, max_tokens: int = 12) -> dict:
    return {"model": MODEL, "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}],
            "max_tokens": max_tokens, "temperature": 0, "ignore_eos": True}


async def _ask(client: httpx.AsyncClient, body: dict) -> tuple[str, int, int]:
    """(text, prompt tokens, cached prompt tokens) of one non-streamed chat completion."""
    resp = await client.post("/v1/chat/completions", json=body)
    assert resp.status_code == 200, resp.text
    out = resp.json()
    usage = out["usage"]
    return out["choices"][0]["message"]["content"], usage["prompt_tokens"], usage["prompt_tokens_details"]["cached_tokens"]


def _run(backend: BackendProc, bodies: list[dict], together: bool) -> list[tuple[str, int, int]]:
    async def go() -> list[tuple[str, int, int]]:
        async with httpx.AsyncClient(base_url=backend.url, timeout=60) as client:
            if together:
                return list(await asyncio.gather(*(_ask(client, b) for b in bodies)))
            return [await _ask(client, b) for b in bodies]

    return asyncio.run(go())


def test_greedy_output_is_the_same_with_and_without_the_cache(tiny_backend: BackendProc,
                                                              uncached_backend: BackendProc) -> None:
    system = "greedy-equality. You operate a phone for the user, one action per step. " * 4
    alone = [_chat(system, f"step {i}: what now?" + " and then?" * i) for i in range(4)]
    # Asked again in a batch with new questions: rows with long hits, short hits and none prefill together.
    batch = [*alone, *(_chat(system, f"batch {i}?" * (1 + i % 3)) for i in range(6)),
             _chat("an unrelated prompt " * 3, "no shared prefix here")]
    cached_alone = _run(tiny_backend, alone, together=False)
    cached_batch = _run(tiny_backend, batch, together=True)
    plain_alone = _run(uncached_backend, alone, together=False)
    plain_batch = _run(uncached_backend, batch, together=True)
    assert [t for t, _, _ in cached_alone] == [t for t, _, _ in plain_alone]
    assert [t for t, _, _ in cached_batch] == [t for t, _, _ in plain_batch]
    # The cache was really used: every later ask reused most of the system prompt, also inside the batch.
    assert cached_alone[0][2] == 0
    assert all(cached >= len(system) - BLOCK for _, _, cached in cached_alone[1:])
    assert sum(cached for _, _, cached in cached_batch) >= 4 * len(system)
    assert all(cached == 0 for _, _, cached in plain_alone + plain_batch)
    assert uncached_backend.metric("vllm:prefix_cache_hits_total") == 0


def test_cached_tokens_in_usage_stream_and_metrics(tiny_backend: BackendProc) -> None:
    queries = tiny_backend.metric("vllm:prefix_cache_queries_total")
    hits = tiny_backend.metric("vllm:prefix_cache_hits_total")
    system = "usage-and-metrics. Answer in one short sentence, then stop. " * 3
    [(_, first_prompt, first_cached)] = _run(tiny_backend, [_chat(system, "first question")], together=False)
    body = {**_chat(system, "second question"), "stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", tiny_backend.url + "/v1/chat/completions", json=body, timeout=60) as resp:
        chunks = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: {")]
    usage = chunks[-1]["usage"]
    assert first_cached == 0
    # Every full block before the question is reused; the prompt's last token never is.
    cached = usage["prompt_tokens_details"]["cached_tokens"]
    assert cached % BLOCK == 0 and len(system) - BLOCK < cached < usage["prompt_tokens"]
    assert all(c["usage"] is None for c in chunks[:-1])
    assert tiny_backend.metric("vllm:prefix_cache_queries_total") == queries + first_prompt + usage["prompt_tokens"]
    assert tiny_backend.metric("vllm:prefix_cache_hits_total") == hits + cached


def test_the_memory_bound_evicts_least_recently_used_blocks(tiny_model: Path) -> None:
    # The tiny model's KV is 1 KiB per token (2 layers x keys and values x 4 heads x 16 dims x 4 bytes):
    # 0.25 MiB holds 256 tokens, 16 blocks.
    backend = start_backend(tiny_model, "--prefix-cache-mb", "0.25", name="small-prefix-cache")
    try:
        a, b = _chat("a" * 190, "?", max_tokens=2), _chat("b" * 190, "?", max_tokens=2)
        (_, prompt, _), (_, _, again), _, (_, _, after_b) = _run(backend, [a, a, b, a], together=False)
        assert again == (prompt - 1) // BLOCK * BLOCK  # all of A's full blocks before its last token
        # B's 13 blocks pushed out A's least recently used ones: its deepest, so A keeps a shorter prefix.
        assert 0 < after_b <= 256 - (prompt // BLOCK) * BLOCK and after_b % BLOCK == 0
    finally:
        backend.stop()


def test_a_finished_answer_is_cached_for_the_next_turn(tiny_model: Path) -> None:
    """In process (the engine on a thread): the second turn reuses the first turn's prompt and answer, and
    decodes the same greedy tokens as an engine without a cache."""
    import torch

    from gpu_backend.engine import Engine
    from gpu_backend.models import load_causal_lm
    from gpu_backend.sequence import SamplingParams

    model, tokenizer = load_causal_lm(tiny_model, torch.device("cpu"), torch.float32)
    first_prompt = tokenizer("first turn: tell me about the sea. ", add_special_tokens=False)["input_ids"]

    async def two_turns(cache_bytes: int) -> tuple[list[int], list[int], int]:
        engine = Engine(model, tokenizer, context_len=4096, prefix_cache_bytes=cache_bytes)
        engine.start(asyncio.get_running_loop())
        try:
            first = engine.submit(first_prompt, SamplingParams(max_tokens=40, temperature=0.0, ignore_eos=True))
            while (await first.events.get()).finish_reason is None:
                pass
            second = engine.submit([*first_prompt, *first.output_ids, 10, 10],
                                   SamplingParams(max_tokens=8, temperature=0.0, ignore_eos=True))
            while (await second.events.get()).finish_reason is None:
                pass
            return first.output_ids, second.output_ids, second.cached_tokens
        finally:
            await asyncio.to_thread(engine.stop)

    answer, cached_reply, cached = asyncio.run(two_turns(1 << 20))
    plain_answer, plain_reply, _ = asyncio.run(two_turns(0))
    assert (answer, cached_reply) == (plain_answer, plain_reply)
    # Every full block of prompt + answer whose KV was computed: the answer's last token never was.
    assert cached == (len(first_prompt) + len(answer) - 1) // BLOCK * BLOCK > len(first_prompt)
