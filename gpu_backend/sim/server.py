"""Simulated replicas over HTTP: OpenAI chat/completions and completions (streamed or not), vLLM-named
`/metrics`, `/healthz`, `/v1/models` and `/_stats` (what the replica served, for benches and tests).

Several replicas run in one process, one port each (`serve`). Health checks and metric scrapes are
not requests: they never enter the queue or the counts.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
import uvicorn

from gpu_backend.sim.model import Replica, SimConfig, prompt_blocks

_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


class SimServer:
    """The ASGI app of one replica. `chunk_tokens`: output tokens per write when streaming (several
    tokens a write keep a busy machine's event loop out of the measurement; the timing is per token)."""

    def __init__(self, replica: Replica, model: str, chunk_tokens: int = 1) -> None:
        self.replica = replica
        self.model = model
        self.chunk_tokens = max(1, chunk_tokens)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/healthz" or path == "/health":
            await _reply(send, 200, b'{"status": "ok"}')
        elif path == "/metrics":
            await _reply(send, 200, self.replica.metrics(self.model), [(b"content-type", b"text/plain")])
        elif path == "/_stats":
            r = self.replica
            await _reply(send, 200, orjson.dumps({**r.stats, "running": len(r.running), "waiting": len(r.waiting),
                                                  "cache_blocks": len(r.cache)}))
        elif path == "/v1/models":
            await _reply(send, 200, orjson.dumps({"object": "list", "data": [
                {"id": self.model, "object": "model", "owned_by": "sim"}]}))
        elif path in ("/v1/chat/completions", "/v1/completions") and scope["method"] == "POST":
            await self._generate(path.endswith("chat/completions"), await _body(receive), receive, send)
        else:
            await _reply(send, 404, b'{"error": {"message": "not found", "type": "invalid_request_error"}}')

    async def _generate(self, chat: bool, raw: bytes, receive: Any, send: Any) -> None:
        try:
            body = orjson.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            await _reply(send, 400, b'{"error": {"message": "body is not a JSON object", '
                                    b'"type": "invalid_request_error"}}')
            return
        replica = self.replica
        blocks, prompt_tokens = prompt_blocks(body, replica.config)
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or replica.config.default_max_tokens
        req = replica.submit(blocks, prompt_tokens, max(1, int(max_tokens)))
        stream = bool(body.get("stream"))
        head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:16]}",
                "object": "chat.completion.chunk" if stream and chat else (
                    "chat.completion" if chat else "text_completion"),
                "created": int(time.time()), "model": body.get("model", self.model)}
        try:
            await replica.prefill(req)
            if stream:
                await self._stream(send, head, chat, req, bool((body.get("stream_options") or {}).get("include_usage")))
            else:
                while req.generated < req.max_tokens:
                    await asyncio.sleep(replica.itl())
                    req.generated += 1
                text = " ".join(f"t{i}" for i in range(req.generated))
                choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
                          if chat else {"index": 0, "text": text, "finish_reason": "length"})
                await _reply(send, 200, orjson.dumps({**head, "choices": [choice], "usage": _usage(req)}))
        finally:
            replica.finish(req)

    async def _stream(self, send: Any, head: dict[str, Any], chat: bool, req: Any, include_usage: bool) -> None:
        replica = self.replica
        await send({"type": "http.response.start", "status": 200, "headers": _SSE})

        def event(i: int) -> bytes:
            choice = ({"index": 0, "delta": {"content": f" t{i}"}, "finish_reason": None} if chat
                      else {"index": 0, "text": f" t{i}", "finish_reason": None})
            return b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n"

        req.generated = 1
        await send({"type": "http.response.body", "body": event(0), "more_body": True})
        while req.generated < req.max_tokens:
            n = min(self.chunk_tokens, req.max_tokens - req.generated)
            await asyncio.sleep(replica.itl() * n)
            out = b"".join(event(req.generated + i) for i in range(n))
            req.generated += n
            await send({"type": "http.response.body", "body": out, "more_body": True})
        done = {"index": 0, "delta": {}, "finish_reason": "length"} if chat else {
            "index": 0, "text": "", "finish_reason": "length"}
        tail = b"data: " + orjson.dumps({**head, "choices": [done]}) + b"\n\n"
        if include_usage:
            tail += b"data: " + orjson.dumps({**head, "choices": [], "usage": _usage(req)}) + b"\n\n"
        await send({"type": "http.response.body", "body": tail + b"data: [DONE]\n\n"})


def _usage(req: Any) -> dict[str, Any]:
    return {"prompt_tokens": req.prompt_tokens, "completion_tokens": req.generated,
            "total_tokens": req.prompt_tokens + req.generated,
            "prompt_tokens_details": {"cached_tokens": req.cached_tokens}}


async def _body(receive: Any) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(parts)


async def _reply(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or _JSON})
    await send({"type": "http.response.body", "body": body})


async def serve(config: SimConfig, ports: list[int], model: str, host: str = "127.0.0.1",
                chunk_tokens: int = 1) -> None:
    """Run one replica per port in this event loop until cancelled."""
    replicas = [Replica(f"r{i}", config) for i in range(len(ports))]
    for replica in replicas:
        replica.siblings = replicas
    servers = [uvicorn.Server(uvicorn.Config(SimServer(replica, model, chunk_tokens), host=host, port=port,
                                             access_log=False, log_level="error", backlog=4096, lifespan="off"))
               for replica, port in zip(replicas, ports, strict=True)]
    await asyncio.gather(*(s.serve() for s in servers))
