"""The request pipeline: the stages of one policy version, in order, then the forward to the pool.

The features place their stages in slots (`gateway.feature.SLOTS`), which give the order:

    JWT auth -> wasm auth plugins -> rate limit -> wasm routing plugins -> pool selection
    -> wasm preprocessing plugins -> response cache -> wasm response plugins -> forward to the pool
    (then, in reverse: on_response before the client sees headers, on_complete after the last byte)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from gateway.context import RequestContext, Usage
from gateway.ingress.api import GENERATE, SPECS, completions_to_generate, parse_completion
from gateway.pipeline.overhead import upstream_timed
from gateway.pipeline.stage import Stage
from gateway.reply import Reply

if TYPE_CHECKING:
    from gateway.upstream.forward import UpstreamResponse, Upstreams

__all__ = ["Pipeline", "Reply"]

log = logging.getLogger("edgegw.pipeline")


class Pipeline:
    def __init__(self, stages: list[Stage], upstreams: Upstreams) -> None:
        self.stages = stages
        self.upstreams = upstreams
        # The stages with something to do after the request phase (most have none), so the hot path
        # awaits no no-op coroutines.
        self._responds = frozenset(s for s in stages if type(s).on_response is not Stage.on_response)
        self._completes = frozenset(s for s in stages if type(s).on_complete is not Stage.on_complete)

    async def process(self, ctx: RequestContext) -> Reply:
        """Run the request stages, forward, then the response stages. Raises GatewayError."""
        ran = ctx.ran
        reply: Reply | None = None
        for stage in self.stages:
            if not stage.enabled_for(ctx):
                continue
            ran.append(stage)
            reply = await stage.on_request(ctx)
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
        upstream = await self.upstreams.send(ctx, ctx.upstream_path or spec.upstream_path, ctx.body)
        if upstream.body is None:
            return Reply(upstream.status, upstream.headers, stream=self._stream(ctx, upstream))
        body = upstream.body
        if upstream.status == 200:
            content_type = upstream.headers.get("content-type", "")
            if spec is GENERATE:
                data = parse_completion(body, content_type)
                ctx.usage = _usage(data)
                body = orjson.dumps(completions_to_generate(data))
            elif content_type.startswith("application/json"):
                _read_usage(ctx, body)
        if ctx.collect_response:
            ctx.response_body = body
        return Reply(upstream.status, upstream.headers, body=body)

    async def _stream(self, ctx: RequestContext, upstream: UpstreamResponse) -> AsyncIterator[bytes]:
        collected: list[bytes] | None = [] if ctx.collect_response else None
        async for chunk in upstream_timed(ctx, self.upstreams.iter_stream(ctx, upstream)):
            if collected is not None:
                collected.append(chunk)
            if b'"usage"' in chunk:
                _stream_usage(ctx, chunk)
            yield chunk
        if collected is not None and ctx.error is None:
            ctx.response_body = b"".join(collected)


def _read_usage(ctx: RequestContext, body: bytes) -> None:
    try:
        ctx.usage = _usage(orjson.loads(body))
    except orjson.JSONDecodeError:
        pass  # passed on as the backend sent it


def _usage(data: Any) -> Usage | None:
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens", 0)
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return Usage(prompt, completion)


def _stream_usage(ctx: RequestContext, chunk: bytes) -> None:
    for line in chunk.split(b"\n"):
        if line.startswith(b"data: {") and b'"usage"' in line:
            try:
                found = _usage(orjson.loads(line[6:]))
            except orjson.JSONDecodeError:
                continue
            if found is not None:
                ctx.usage = found

