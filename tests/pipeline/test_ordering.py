"""In process: the stage order the features' slots make from a config (`build_parts`), and a whole request through the
`Pipeline` to a real in-process HTTP upstream (aiohttp on 127.0.0.1): request stages in order, the
forward (with a retry past a 503), response stages in reverse before the client sees the answer.

The bookkeeping without an upstream (`ctx.ran`, a stage answering, completion order) is in
test_pipeline_state.py; this file adds what needs a config or an upstream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.config.schema import GatewayConfig
from gateway.context import RequestContext, Usage
from gateway.features import FEATURES, load_config
from gateway.pipeline.pipeline import Pipeline
from gateway.pipeline.stage import Stage
from gateway.policy.parts import build_parts
from gateway.reply import Reply
from gateway.upstream.forward import Upstreams
from tests.conftest import DEMO_SECRET, issuer_config
from tests.pipeline.test_pipeline_state import Recording

CHAT = "/v1/chat/completions"


def _config(tmp_path: Path, urls: list[str], top: dict[str, Any] | None = None, **route: Any) -> GatewayConfig:
    data = {
        **(top or {}),
        "admin": {"issuer": "test"},
        "issuers": [issuer_config()],
        "pools": [{"name": "default", "models": ["m"], "balancer": "round_robin",
                   "endpoints": [{"url": url} for url in urls],
                   "health": {"interval_s": 30}}],
        "routes": [{"name": "inference", "paths": [CHAT], **route}],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(path)


@pytest.fixture(autouse=True)
def _issuer_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEGW_TEST_SECRET", DEMO_SECRET)


def _stages(config: GatewayConfig) -> list[Stage]:
    return build_parts(config, FEATURES).stages


# --- stage order -------------------------------------------------------------------------------


async def test_a_plain_config_gets_only_auth_and_pool_selection(tmp_path: Path) -> None:
    config = _config(tmp_path, ["http://127.0.0.1:9"])
    assert [s.name for s in _stages(config)] == ["jwt_auth", "pool_select"]


async def test_every_subsystem_in_use_gets_its_stage_in_the_documented_order(tmp_path: Path) -> None:
    config = _config(tmp_path, ["http://127.0.0.1:9"], top={"plugin_dir": str(tmp_path / "plugins")},
                     rate_limits=[{"name": "l", "key": "subject", "requests_per_minute": 10}],
                     cache={"ttl_s": 60})
    assert [s.name for s in _stages(config)] == [
        "jwt_auth", "wasm_auth", "ratelimit", "wasm_routing", "pool_select", "wasm_preprocess", "cache",
        "wasm_response"]


async def test_limits_without_a_cache_leave_the_cache_stage_out(tmp_path: Path) -> None:
    config = _config(tmp_path, ["http://127.0.0.1:9"],
                     rate_limits=[{"name": "l", "key": "subject", "requests_per_minute": 10}])
    assert [s.name for s in _stages(config)] == ["jwt_auth", "ratelimit", "pool_select"]


# --- a request through the pipeline to an in-process upstream -----------------------------------


class Upstream:
    """One in-process backend: answers `status` to chat requests (a JSON body or an SSE stream) and
    remembers what it was sent."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.seen: list[dict[str, str]] = []
        app = web.Application()
        app.router.add_get("/healthz", self._health)
        app.router.add_post(CHAT, self._chat)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        self.seen.append({k.lower(): v for k, v in request.headers.items()})
        body = await request.json()
        if self.status != 200:
            return web.json_response({"error": {"message": "busy"}}, status=self.status)
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        if not body.get("stream"):
            return web.json_response({"choices": [{"message": {"content": "hi"}}], "usage": usage})
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(b'data: {"choices": [{"delta": {"content": "h"}}]}\n\n')
        await resp.write(b'data: {"choices": [], "usage": ' + orjson.dumps(usage) + b"}\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp


class ChoosePool(Stage):
    """Stands in for routing: every request goes to the one pool."""

    name = "choose"

    def __init__(self, upstreams: Upstreams, log: list[str]) -> None:
        self.upstreams, self.log = upstreams, log

    async def on_request(self, ctx: RequestContext) -> Reply | None:
        self.log.append("request choose")
        ctx.pool = self.upstreams.pools["default"]
        return None


@pytest.fixture
async def upstreams(tmp_path: Path) -> AsyncIterator[tuple[Upstreams, Upstream, Upstream]]:
    busy, good = Upstream(503), Upstream(200)
    await busy.server.start_server()
    await good.server.start_server()
    ups = Upstreams(_config(tmp_path, [busy.url, good.url]).pools)
    await ups.start()
    try:
        yield ups, busy, good
    finally:
        await ups.stop()
        await busy.server.close()
        await good.server.close()


def _chat_ctx(stream: bool) -> RequestContext:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": stream}
    return RequestContext(request_id="req-1", method="POST", path=CHAT, headers={}, client_ip="127.0.0.1",
                          body=orjson.dumps(body), body_json=body, model="m", stream=stream)


async def test_a_forwarded_request_runs_request_stages_in_order_and_response_stages_in_reverse(
        upstreams: tuple[Upstreams, Upstream, Upstream]) -> None:
    ups, busy, good = upstreams
    log: list[str] = []
    first, last = Recording("first", log), Recording("last", log)
    pipeline = Pipeline([first, ChoosePool(ups, log), last], ups)
    results = []
    for _ in range(2):  # round robin: one of the two requests meets the busy endpoint first
        ctx = _chat_ctx(stream=False)
        reply = await pipeline.process(ctx)
        await pipeline.complete(ctx)
        results.append((ctx, reply))
    assert log == ["request first", "request choose", "request last", "response last", "response first",
                   "complete last", "complete first"] * 2
    for ctx, reply in results:
        assert reply.status == ctx.status == 200 and orjson.loads(reply.body or b"")["choices"]
        assert reply.headers["x-first"] == reply.headers["x-last"] == "seen"
        assert ctx.usage == Usage(3, 2) and ctx.endpoint is not None and ctx.endpoint.url == good.url
    # the busy endpoint's 503 was retried on the good one: it saw one request, the good one both
    assert len(busy.seen) == 1 and len(good.seen) == 2
    assert sorted(ctx.attempts for ctx, _ in results) == [1, 2]
    assert all(h["x-request-id"] == "req-1" and h["x-forwarded-for"] == "127.0.0.1" for h in good.seen)
    assert all(e.in_flight == 0 for e in ups.pools["default"].endpoints)


async def test_a_stream_gets_its_response_stages_before_the_first_chunk_and_usage_after_the_last(
        upstreams: tuple[Upstreams, Upstream, Upstream]) -> None:
    ups, _, good = upstreams
    log: list[str] = []
    pipeline = Pipeline([Recording("first", log), ChoosePool(ups, log), Recording("last", log)], ups)
    ups.pools["default"].eject(ups.pools["default"].endpoints[0])  # straight to the good one
    ctx = _chat_ctx(stream=True)
    reply = await pipeline.process(ctx)
    assert reply.stream is not None and reply.body is None
    assert log[-2:] == ["response last", "response first"] and ctx.usage is None
    chunks = [chunk async for chunk in reply.stream]
    assert b"[DONE]" in b"".join(chunks) and ctx.usage == Usage(3, 2)
    assert ctx.endpoint is not None and ctx.endpoint.url == good.url
    await pipeline.complete(ctx)
    assert log[-2:] == ["complete last", "complete first"]
    assert all(e.in_flight == 0 for e in ups.pools["default"].endpoints)
