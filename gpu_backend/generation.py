"""/v1/completions and /v1/chat/completions: validate, tokenize, submit to the engine, answer or stream."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from gpu_backend.engine import QueueFull
from gpu_backend.errors import APIError, bad_request
from gpu_backend.openai_format import Shape, sse
from gpu_backend.sequence import Event, Sequence
from gpu_backend.state import BackendState
from gpu_backend.telemetry import Observation, telemetry_of
from gpu_backend.validation import GenerationRequest, check_model, generation_request, messages, prompts
from gpu_backend.vision_prompt import vision_prompt


async def generate(request: Request, body: dict[str, Any], state: BackendState, chat: bool,
                   release: Any) -> Response:
    """Handle one completion request; `release` is called exactly once when the request is fully done."""
    model = check_model(body, [state.model_name])
    req = generation_request(body, state.context_len, None if chat else state.options.default_max_tokens)
    vision = None
    if chat and state.processor is not None:
        prompt = await vision_prompt(state.processor, body, state.options.images)
        prompt_ids, vision = [prompt.ids], prompt.arrays
    else:
        prompt_ids = _chat_prompt(state, body) if chat else _completion_prompts(state, body)
    seq_params = [_fit(state, ids, req, "messages" if chat else "prompt") for ids in prompt_ids]
    events: asyncio.Queue[Event] = asyncio.Queue()
    seqs = _submit(state, prompt_ids, seq_params, req.n, events, vision)
    shape = Shape(chat, model)
    prompt_tokens = sum(len(ids) for ids in prompt_ids)
    seen = telemetry_of(state).begin(request.headers, request.url.path, model, prompt_tokens, body)

    def cleanup() -> None:
        seen.finish()
        for s in seqs:
            if s.finish_reason is None and not s.cancelled:
                state.engine.cancel(s)
        release()

    if req.stream:
        return StreamingResponse(_stream(shape, seqs, events, req, prompt_tokens, cleanup, seen),
                                 media_type="text/event-stream", background=BackgroundTask(cleanup),
                                 headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
    try:
        collect = asyncio.ensure_future(_collect(seqs, events, seen, req.n))
        watch = asyncio.ensure_future(_disconnected(request))
        await asyncio.wait({collect, watch}, return_when=asyncio.FIRST_COMPLETED)
        watch.cancel()
        if not collect.done():  # the client went away: stop its sequences, answer nobody
            collect.cancel()
            return Response(status_code=499)
        texts, reasons, completion, cached = collect.result()
    finally:
        cleanup()
    if "error" in reasons:
        raise APIError(500, "generation failed in the engine; see the backend log", code="engine_error")
    return JSONResponse(shape.response(texts, reasons, prompt_tokens, completion, cached))


def _completion_prompts(state: BackendState, body: dict[str, Any]) -> list[list[int]]:
    out = []
    vocab = len(state.tokenizer)
    for p in prompts(body):
        if isinstance(p, str):
            ids = state.tokenizer(p, add_special_tokens=True)["input_ids"]
        else:
            if any(not 0 <= t < vocab for t in p):
                raise bad_request(f"'prompt' token ids must be in [0, {vocab})", "prompt")
            ids = list(p)
        if not ids:
            bos = state.tokenizer.bos_token_id
            if bos is None:
                raise bad_request("'prompt' must not be empty", "prompt")
            ids = [bos]
        out.append(ids)
    return out


def _chat_prompt(state: BackendState, body: dict[str, Any]) -> list[list[int]]:
    msgs = messages(body)
    try:
        text = state.tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    except Exception as exc:  # no template, or the template rejects the roles given
        raise bad_request(f"cannot apply the model's chat template: {exc}", "messages") from exc
    return [state.tokenizer(text, add_special_tokens=False)["input_ids"]]


def _fit(state: BackendState, ids: list[int], req: GenerationRequest, field: str) -> Any:
    """Check the prompt against the context and cap max_tokens to what is left of it."""
    ctx = state.context_len
    if len(ids) >= ctx:
        raise bad_request(f"This model's maximum context length is {ctx} tokens; the prompt has {len(ids)} "
                          f"tokens, which leaves no room for a completion. Shorten the prompt.", field,
                          "context_length_exceeded")
    room = ctx - len(ids)
    if req.max_tokens_given and req.params.max_tokens > room:
        raise bad_request(f"This model's maximum context length is {ctx} tokens; the prompt has {len(ids)} "
                          f"tokens and max_tokens is {req.params.max_tokens}. Reduce max_tokens to at most "
                          f"{room}.", "max_tokens", "context_length_exceeded")
    return dataclasses.replace(req.params, max_tokens=min(req.params.max_tokens, room))


def _submit(state: BackendState, prompt_ids: list[list[int]], params: list[Any], n: int,
            events: asyncio.Queue[Event], vision: dict | None = None) -> list[Sequence]:
    seqs: list[Sequence] = []
    try:
        for p, (ids, prm) in enumerate(zip(prompt_ids, params, strict=True)):
            for j in range(n):
                if prm.seed is not None and j:
                    prm = dataclasses.replace(prm, seed=prm.seed + 1)  # distinct, reproducible choices
                seqs.append(state.engine.submit(ids, prm, events, index=p * n + j, vision=vision))
    except QueueFull:
        for s in seqs:
            state.engine.cancel(s)
        raise APIError(503, "The backend is at capacity (running batch and queue are full); retry shortly.",
                       code="queue_full", headers={"Retry-After": "1"}) from None
    return seqs


async def _collect(seqs: list[Sequence], events: asyncio.Queue[Event], seen: Observation, n: int):
    texts = [""] * len(seqs)
    reasons: list[str | None] = [None] * len(seqs)
    tokens = [0] * len(seqs)
    cached = 0
    remaining = len(seqs)
    while remaining:
        ev = await events.get()
        seen.event(ev)
        texts[ev.index] += ev.text
        if ev.finish_reason is not None:
            reasons[ev.index], tokens[ev.index] = ev.finish_reason, ev.completion_tokens
            cached += _prompt_cached(ev, n)
            remaining -= 1
    return texts, reasons, sum(tokens), cached


def _prompt_cached(ev: Event, n: int) -> int:
    """A prompt's cached tokens, counted once like its prompt tokens: from its first choice (of n)."""
    return ev.cached_tokens if ev.index % n == 0 else 0


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (the body was already read, so only that can arrive)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _stream(shape: Shape, seqs: list[Sequence], events: asyncio.Queue[Event], req: GenerationRequest,
                  prompt_tokens: int, cleanup: Any, seen: Observation) -> AsyncIterator[bytes]:
    usage = req.include_usage
    try:
        if shape.chat:
            for i in range(len(seqs)):
                yield sse(shape.chunk(i, None, None, role=True, with_usage=usage))
        remaining, completion, cached = len(seqs), 0, 0
        while remaining:
            ev = await events.get()
            seen.event(ev)
            if ev.finish_reason == "error":
                err = APIError(500, "generation failed in the engine; see the backend log", code="engine_error")
                yield sse(err.body())
                return
            if shape.chat:
                if ev.text:
                    yield sse(shape.chunk(ev.index, ev.text, None, with_usage=usage))
                if ev.finish_reason:
                    yield sse(shape.chunk(ev.index, None, ev.finish_reason, with_usage=usage))
            elif ev.text or ev.finish_reason:
                yield sse(shape.chunk(ev.index, ev.text, ev.finish_reason, with_usage=usage))
            if ev.finish_reason:
                remaining -= 1
                completion += ev.completion_tokens
                cached += _prompt_cached(ev, req.n)
        if usage:
            yield sse(shape.usage_chunk(prompt_tokens, completion, cached))
        yield sse("[DONE]")
    finally:
        cleanup()
