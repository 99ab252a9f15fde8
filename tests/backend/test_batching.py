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
    """A request arriving while a long one decodes finishes first: it joined between decode steps.

    The short one is sent once the long one has streamed its first tokens (not after a fixed delay: on a
    quiet machine the tiny model finishes 2,000 tokens in about a second)."""

    async def run() -> tuple[list[str], int]:
        async with tiny_backend.async_client() as client:
            order: list[str] = []
            started = asyncio.Event()
            streamed = 0

            async def long() -> None:
                nonlocal streamed
                stream = await client.completions.create(model=MODEL, prompt="long one", max_tokens=2000,
                                                         temperature=0, stream=True, extra_body={"ignore_eos": True})
                async for _ in stream:
                    streamed += 1
                    if streamed == 3:
                        started.set()
                order.append("long")

            async def short() -> None:
                await started.wait()
                await _complete(client, "short", 5)
                order.append("short")

            await asyncio.gather(long(), short())
            return order, streamed

    order, streamed = asyncio.run(run())
    assert order == ["short", "long"]
    assert streamed >= 1000  # the long one really streamed token by token


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
