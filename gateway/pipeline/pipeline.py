"""The request pipeline: the stages of one policy version, in order, then the forward to the pool.

The features place their stages in slots (`gateway.feature.SLOTS`), which give the order:

    JWT auth -> wasm auth plugins -> rate limit -> wasm routing plugins -> pool selection
    -> wasm preprocessing plugins -> response cache -> wasm response plugins -> forward to the pool
    (then, in reverse: on_response before the client sees headers, on_complete after the last byte)
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from gateway.context import Answer, RequestContext, Usage
from gateway.errors import error_code
from gateway.ingress.api import GENERATE, SPECS, completions_to_generate, parse_completion
from gateway.pipeline.overhead import upstream_timed
from gateway.pipeline.rename import rename_json, rename_stream
from gateway.pipeline.stage import Stage
from gateway.reply import Reply
from gateway.telemetry.answer import read_answer

if TYPE_CHECKING:
    from gateway.upstream.fallback import FallbackSender, ModelPlans
    from gateway.upstream.forward import UpstreamResponse, Upstreams

__all__ = ["Pipeline", "Reply"]

log = logging.getLogger("edgegw.pipeline")


class Pipeline:
    def __init__(self, stages: list[Stage], upstreams: Upstreams,
                 fallbacks: tuple[ModelPlans, FallbackSender] | None = None) -> None:
        """`fallbacks`: the policy's aliases, context windows and fallbacks (`gateway.upstream.fallback`),
        and what sends a request along them; None when no model has any."""
        self.stages = stages
        self.upstreams = upstreams
        self.plans: ModelPlans | None = fallbacks[0] if fallbacks is not None else None
        self.fallbacks: FallbackSender | None = fallbacks[1] if fallbacks is not None else None
        # The stages with something to do after the request phase (most have none), so the hot path
        # awaits no no-op coroutines.
        self._responds = frozenset(s for s in stages if type(s).on_response is not Stage.on_response)
        self._completes = frozenset(s for s in stages if type(s).on_complete is not Stage.on_complete)
        self._model_keyed = frozenset(s for s in stages if type(s).on_model_change is not Stage.on_model_change)

    async def process(self, ctx: RequestContext) -> Reply:
        """Run the request stages, forward, then the response stages. Raises GatewayError."""
        ran = ctx.ran
        trace = ctx.trace
        if trace is not None:
            trace.mark()  # each stage that runs is a span (`RequestTrace.mark`)
        reply: Reply | None = None
        for stage in self.stages:
            if not stage.enabled_for(ctx):
                continue
            ran.append(stage)
            if trace is None:
                reply = await stage.on_request(ctx)
            else:
                try:
                    reply = await stage.on_request(ctx)
                except BaseException as exc:
                    trace.mark(error_code(exc))
                    raise
                trace.mark()
            if reply is not None:
                break
        if reply is None:
            reply = await self._forward(ctx)
        ctx.status = reply.status
        responds = self._responds
        for stage in reversed(ran):
            if stage in responds:
                await stage.on_response(ctx)
        reply.headers.update(ctx.response_headers)
        return reply

    async def complete(self, ctx: RequestContext) -> None:
        """After the last byte (or a failure): every stage that ran gets `on_complete`, newest first."""
        completes = self._completes
        for stage in reversed(ctx.ran):
            if stage not in completes:
                continue
            try:
                await stage.on_complete(ctx)
            except Exception:
                log.exception("stage %s failed in on_complete", stage.name)

    async def _forward(self, ctx: RequestContext) -> Reply:
        spec = SPECS[ctx.path]
        if ctx.body_dirty:
            ctx.body = orjson.dumps(ctx.body_json)
        path = ctx.upstream_path or spec.upstream_path
        hops = None
        if self.plans is not None:
            assert ctx.route is not None and ctx.pool is not None
            hops = self.plans.plan(ctx.route, ctx.model, ctx.pool.name)
        if hops is None or self.fallbacks is None:
            upstream = await self.upstreams.send(ctx, path, ctx.body)
        else:
            upstream = await self.fallbacks.send(ctx, path, hops, self._model_changed)
        if upstream.body is None:
            return Reply(upstream.status, upstream.headers, stream=self._stream(ctx, upstream))
        body = upstream.body
        if upstream.status == 200:
            content_type = upstream.headers.get("content-type", "")
            if spec is GENERATE:
                data = parse_completion(body, content_type)
                ctx.usage = _usage(data)
                if ctx.answer is not None and ctx.answer.details:
                    read_answer(ctx.answer, data)
                if ctx.served_model is not None and isinstance(data, dict):
                    data["model"] = ctx.served_model
                body = orjson.dumps(completions_to_generate(data))
            elif content_type.startswith("application/json"):
                _read_usage(ctx, body)
                if ctx.served_model is not None:
                    body = rename_json(body, ctx.served_model)
        if ctx.collect_response and ctx.fallback_from is None:  # (a fallback's answer is not the asked model's)
            ctx.response_body = body
        return Reply(upstream.status, upstream.headers, body=body)

    async def _model_changed(self, ctx: RequestContext) -> None:
        """A fallback sends the request to another model (`ctx.model`): stages that key on the model
        admit it again (raising refuses it)."""
        for stage in ctx.ran:
            if stage in self._model_keyed:
                await stage.on_model_change(ctx)

    async def _stream(self, ctx: RequestContext, upstream: UpstreamResponse) -> AsyncIterator[bytes]:
        collected: list[bytes] | None = [] if ctx.collect_response and ctx.fallback_from is None else None
        answer = ctx.answer
        chunks = upstream_timed(ctx, self.upstreams.iter_stream(ctx, upstream))
        if ctx.served_model is not None:
            chunks = rename_stream(chunks, ctx.served_model)
        async for chunk in chunks:
            if answer is not None:
                _stream_answer(ctx, answer, chunk)
            if collected is not None:
                collected.append(chunk)
            if b'"usage"' in chunk:
                _stream_usage(ctx, chunk)
            yield chunk
        if collected is not None and ctx.error is None:
            ctx.response_body = b"".join(collected)


def _read_usage(ctx: RequestContext, body: bytes) -> None:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return  # passed on as the backend sent it
    ctx.usage = _usage(data)
    if ctx.answer is not None and ctx.answer.details:
        read_answer(ctx.answer, data)


def _stream_answer(ctx: RequestContext, answer: Answer, chunk: bytes) -> None:
    if answer.first_chunk_s is None:
        answer.first_chunk_s = time.perf_counter() - ctx.started
    if answer.details and (answer.model is None or b'"finish_reason":"' in chunk):
        for line in chunk.split(b"\n"):
            if line.startswith(b"data: {"):
                try:
                    read_answer(answer, orjson.loads(line[6:]))
                except orjson.JSONDecodeError:
                    continue


def _usage(data: Any) -> Usage | None:
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens", 0)
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(prompt, completion, cached if isinstance(cached, int) and 0 <= cached <= prompt else 0)


def _stream_usage(ctx: RequestContext, chunk: bytes) -> None:
    for line in chunk.split(b"\n"):
        if line.startswith(b"data: {") and b'"usage"' in line:
            try:
                found = _usage(orjson.loads(line[6:]))
            except orjson.JSONDecodeError:
                continue
            if found is not None:
                ctx.usage = found

