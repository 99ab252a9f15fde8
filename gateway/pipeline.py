"""The request pipeline, in one place.

    JWT auth -> wasm auth plugins -> rate limit -> wasm routing plugins -> pool selection
    -> wasm preprocessing plugins -> response cache -> forward to the pool
    (then, in reverse: on_response before the client sees headers, on_complete after the last byte)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.responses import Response, StreamingResponse

from gateway.api import GENERATE, SPECS, completions_to_generate
from gateway.auth.verifier import JwtVerifier
from gateway.config.schema import GatewayConfig
from gateway.context import RequestContext, Usage
from gateway.errors import GatewayError
from gateway.overhead import upstream_timed
from gateway.routing import RouteTable
from gateway.stages.base import Stage
from gateway.stages.jwt_auth import JwtAuthStage
from gateway.stages.pool_select import PoolSelectStage
from gateway.upstream.forward import Upstreams

log = logging.getLogger("edgegw.pipeline")


@dataclass(slots=True)
class Reply:
    """What the client receives: a full body or a stream of SSE bytes."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    stream: AsyncIterator[bytes] | None = None


def build_stages(config: GatewayConfig, verifier: JwtVerifier, table: RouteTable, upstreams: Upstreams,
                 plugins: Any | None) -> list[Stage]:
    """The pipeline's order, as the module docstring draws it. Subsystems a config does not use are left out."""

    def plugin_phase(phase: str) -> list[Stage]:
        if plugins is None:
            return []
        from gateway.plugins.stage import PluginPhaseStage

        return [PluginPhaseStage(plugins, phase)]

    from gateway.cache.stage import build_cache_stage
    from gateway.ratelimit.stage import build_ratelimit_stage

    return [
        JwtAuthStage(verifier),
        *plugin_phase("auth"),
        *build_ratelimit_stage(config),
        *plugin_phase("routing"),
        PoolSelectStage(table, upstreams),
        *plugin_phase("preprocess"),
        *build_cache_stage(config),
        *plugin_phase("response"),
    ]


class Pipeline:
    def __init__(self, stages: list[Stage], upstreams: Upstreams) -> None:
        self.stages = stages
        self.upstreams = upstreams
        # The stages with something to do after the request phase (most have none): awaiting a
        # no-op coroutine per stage and phase is measurable on the hot path.
        self._responds = frozenset(s for s in stages if type(s).on_response is not Stage.on_response)
        self._completes = frozenset(s for s in stages if type(s).on_complete is not Stage.on_complete)

    async def process(self, ctx: RequestContext) -> Reply:
        """Run the request stages, forward, then the response stages. Raises GatewayError."""
        ran: list[Stage] = []
        ctx.scratch["_ran"] = ran
        reply: Reply | None = None
        for stage in self.stages:
            if not stage.enabled_for(ctx):
                continue
            ran.append(stage)
            early = await stage.on_request(ctx)
            if early is not None:
                reply = _from_response(early)
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
        for stage in reversed(ctx.scratch.get("_ran", ())):
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
        if upstream.status == 200 and upstream.headers.get("content-type", "").startswith("application/json"):
            body = self._read_usage(ctx, body)
        elif spec is GENERATE and upstream.status == 200:
            raise GatewayError(502, "upstream answered with a non-JSON body", "upstream_bad_response")
        if ctx.collect_response:
            ctx.response_body = body
        return Reply(upstream.status, upstream.headers, body=body)

    def _read_usage(self, ctx: RequestContext, body: bytes) -> bytes:
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            if ctx.path == GENERATE.path:
                raise GatewayError(502, "upstream answered with invalid JSON", "upstream_bad_response") from None
            return body
        ctx.usage = _usage(data)
        if ctx.path == GENERATE.path:
            return orjson.dumps(completions_to_generate(data))
        return body

    async def _stream(self, ctx: RequestContext, upstream: Any) -> AsyncIterator[bytes]:
        collected: list[bytes] | None = [] if ctx.collect_response else None
        async for chunk in upstream_timed(ctx, self.upstreams.iter_stream(ctx, upstream)):
            if collected is not None:
                collected.append(chunk)
            if b'"usage"' in chunk:
                _stream_usage(ctx, chunk)
            yield chunk
        if collected is not None and ctx.error is None:
            ctx.response_body = b"".join(collected)


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


def _from_response(response: Response) -> Reply:
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in response.raw_headers
               if k not in (b"content-length",)}
    if isinstance(response, StreamingResponse):
        return Reply(response.status_code, headers, stream=response.body_iterator)  # type: ignore[arg-type]
    return Reply(response.status_code, headers, body=bytes(response.body))
