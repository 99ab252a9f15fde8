"""In process: the pipeline's own bookkeeping on the request context (no gateway, no upstream): which
stages ran, a stage answering with a `Reply`, and the order of the response and completion phases."""

from __future__ import annotations

import pytest

from gateway.context import RequestContext
from gateway.errors import GatewayError
from gateway.pipeline.pipeline import Pipeline
from gateway.pipeline.stage import Stage
from gateway.reply import Reply
from gateway.upstream.forward import Upstreams


class Recording(Stage):
    """Appends what happened to it to a shared log; answers itself when given a reply."""

    def __init__(self, name: str, log: list[str], answer: Reply | None = None, enabled: bool = True) -> None:
        self.name, self.log, self.answer, self.enabled = name, log, answer, enabled

    def enabled_for(self, ctx: RequestContext) -> bool:
        return self.enabled

    async def on_request(self, ctx: RequestContext) -> Reply | None:
        self.log.append(f"request {self.name}")
        return self.answer

    async def on_response(self, ctx: RequestContext) -> None:
        self.log.append(f"response {self.name}")
        ctx.response_headers[f"x-{self.name}"] = "seen"

    async def on_complete(self, ctx: RequestContext) -> None:
        self.log.append(f"complete {self.name}")


def _ctx() -> RequestContext:
    return RequestContext(request_id="r", method="POST", path="/v1/chat/completions", headers={},
                          client_ip="127.0.0.1")


def _upstreams() -> Upstreams:
    return Upstreams(())  # no pools: these requests never reach the forwarder


async def test_a_stage_that_answers_ends_the_request_phase_and_only_stages_that_ran_complete() -> None:
    log: list[str] = []
    answer = Reply(200, {"content-type": "application/json"}, body=b'{"cached": true}')
    first = Recording("first", log)
    off = Recording("off", log, enabled=False)
    cache = Recording("cache", log, answer=answer)
    after = Recording("after", log)
    pipeline = Pipeline([first, off, cache, after], _upstreams())
    ctx = _ctx()

    reply = await pipeline.process(ctx)
    assert reply is answer and reply.status == ctx.status == 200 and reply.body == b'{"cached": true}'
    assert ctx.ran == [first, cache]
    assert reply.headers == {"content-type": "application/json", "x-cache": "seen", "x-first": "seen"}
    await pipeline.complete(ctx)
    assert log == ["request first", "request cache", "response cache", "response first", "complete cache",
                   "complete first"]


async def test_a_rejecting_stage_still_completes_the_stages_before_it() -> None:
    log: list[str] = []

    class Reject(Stage):
        async def on_request(self, ctx: RequestContext) -> Reply | None:
            raise GatewayError(429, "slow down", "rate_limited")

    first, reject = Recording("first", log), Reject()
    pipeline = Pipeline([first, reject, Recording("never", log)], _upstreams())
    ctx = _ctx()
    with pytest.raises(GatewayError):
        await pipeline.process(ctx)
    assert ctx.ran == [first, reject]
    await pipeline.complete(ctx)
    assert log == ["request first", "complete first"]


async def test_stage_lifecycle_hooks_default_to_nothing() -> None:
    stage = Stage()
    assert await stage.start() is None and await stage.stop() is None
    assert Reply.from_error(GatewayError(503, "busy", "upstream_unavailable", headers={"retry-after": "1"})) == Reply(
        503, {"retry-after": "1", "content-type": "application/json"},
        body=b'{"error":{"message":"busy","type":"service_unavailable","param":null,"code":"upstream_unavailable"}}')
