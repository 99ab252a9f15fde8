"""Continuous batching: greedy output is the same alone and in a batch, and requests really share steps."""

from __future__ import annotations

import asyncio

import openai

from tests.backend.conftest import BackendProc

MODEL = "tiny-llama"


async def _complete(client: openai.AsyncOpenAI, prompt: str, max_tokens: int) -> str:
    out = await client.completions.create(model=MODEL, prompt=prompt, max_tokens=max_tokens, temperature=0,
                                          extra_body={"ignore_eos": True})
    assert out.usage.completion_tokens == max_tokens
    return out.choices[0].text


def test_greedy_batched_equals_alone(tiny_backend: BackendProc) -> None:
    # 32 prompts of very different lengths, and different max_tokens so sequences leave the batch at
    # different steps while others keep decoding.
    prompts = [f"{i}:" + "lorem ipsum " * (i % 9) + "x" * i for i in range(32)]
    lengths = [8 + (i * 7) % 25 for i in range(32)]

    async def alone() -> list[str]:
        async with tiny_backend.async_client() as client:
            return [await _complete(client, p, n) for p, n in zip(prompts[:6], lengths[:6], strict=True)]

    async def together() -> list[str]:
        async with tiny_backend.async_client() as client:
            return list(await asyncio.gather(*(_complete(client, p, n)
                                               for p, n in zip(prompts, lengths, strict=True))))

    by_itself = asyncio.run(alone())
    steps_before = tiny_backend.metric("edgegw_backend_batch_size_count")
    rows_before = tiny_backend.metric("edgegw_backend_batch_size_sum")
    batched = asyncio.run(together())
    assert batched[:6] == by_itself
    # The 32 sequences must have shared decode steps: the mean running batch is far above 1.
    steps = tiny_backend.metric("edgegw_backend_batch_size_count") - steps_before
    rows = tiny_backend.metric("edgegw_backend_batch_size_sum") - rows_before
    assert rows / steps > 8, (rows, steps)


def test_late_request_joins_running_batch(tiny_backend: BackendProc) -> None:
    """A request arriving while a long one decodes finishes first: it joined between decode steps."""

    async def run() -> list[str]:
        async with tiny_backend.async_client() as client:
            order: list[str] = []

            async def tagged(tag: str, prompt: str, n: int, delay: float) -> None:
                await asyncio.sleep(delay)
                await _complete(client, prompt, n)
                order.append(tag)

            await asyncio.gather(tagged("long", "long one", 400, 0.0), tagged("short", "short", 5, 0.3))
            return order

    assert asyncio.run(run()) == ["short", "long"]


def test_thread_engine_matches_process_engine(tiny_model, tiny_backend: BackendProc) -> None:
    """`--engine thread` (model in the HTTP process) serves the same greedy tokens as the default."""
    from tests.backend.conftest import start_backend

    threaded = start_backend(tiny_model, "--engine", "thread", name="thread-engine")
    try:
        prompts = ["alpha", "a much longer prompt " * 3, "z"]

        async def run(backend: BackendProc) -> list[str]:
            async with backend.async_client() as client:
                return list(await asyncio.gather(*(_complete(client, p, 12) for p in prompts)))

        assert asyncio.run(run(threaded)) == asyncio.run(run(tiny_backend))
    finally:
        threaded.stop()
