"""A small OpenAI-compatible backend for fault injection: slow, 5xx, stalls, dies mid-stream, crashes,
answers garbage.

Faults come from the `x-fake-fault` request header or `POST /_control {"fault": ..., "health": ...}`:
  500 | 503 | 429 | slow:SECONDS | stall | die-mid-stream:N | exit
  rename:NAME, answer (every stream chunk too) with model NAME whatever the request named
  p:SHARE:FAULT, that fault on a random SHARE (0..1) of requests (e.g. p:0.3:500)
  bad:KIND, a 200 that is no good answer (`BAD_ANSWERS`): invalid-json | error-object | text-plain |
      json-array | empty | html | status-203
  bad-stream:KIND, a stream that is no complete answer (`BAD_STREAMS`): no-done | no-finish |
      error-event | invalid-json
`GET /metrics` answers vLLM-named load gauges (`/_control {"signals": {"waiting": N, "running": N,
"kv": 0..1}}` sets them) or, with `/_control {"metrics": MODE}`, a faulty scrape: missing (404) |
slow (3 s) | huge (8 MiB) | garbage | nan | ok. Scrapes are counted apart (`metrics_scrapes`), never as
requests.
`GET /_stats` reports what it saw (requests by path, cancelled streams, requests in flight).

Multimodal: a chat request with OpenAI media parts (`image_url` with a base64 `data:` URL,
`input_audio` with base64 `data`) is answered with what the parts decode to (`media_summary`), and
`/_stats` keeps it as `last_media`; a part no OpenAI server knows (e.g. raw `image` bytes) is a 400.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import random
import time
from typing import Any

import orjson
import uvicorn

# bad:KIND: (status, content type, body) of a non-streamed answer.
BAD_ANSWERS: dict[str, tuple[int, bytes, bytes]] = {
    "invalid-json": (200, b"application/json", b'{"id": "x", "object": "text_completion", "choices": [{"te'),
    "error-object": (200, b"application/json", b'{"error": {"message": "overloaded", "type": "server_error"}}'),
    "text-plain": (200, b"text/plain", b'{"id": "x", "object": "text_completion", "choices": []}'),
    "json-array": (200, b"application/json", b'[{"text": "tok0"}]'),
    "empty": (200, b"application/json", b""),
    "html": (200, b"text/html", b"<html><body>502 Bad Gateway (nginx)</body></html>"),
    "status-203": (203, b"application/json", b'{"id": "x", "object": "text_completion", "choices": '
                                              b'[{"index": 0, "text": "tok0", "finish_reason": "length"}]}'),
}
# bad-stream:KIND: what replaces the end of a stream (after its content chunks).
BAD_STREAMS: dict[str, bytes] = {
    "no-done": b"",  # the finish chunk, then the connection ends cleanly without `data: [DONE]`
    "no-finish": b"data: [DONE]\n\n",  # no finish_reason anywhere
    "error-event": b'event: error\ndata: {"error": {"message": "engine died", "type": "server_error"}}\n\n'
                   b"data: [DONE]\n\n",
    "invalid-json": b'data: {"id": "c1", "choices": [{"ind\n\ndata: [DONE]\n\n',
}


class FakeBackend:
    def __init__(self, name: str, models: list[str], token_delay_s: float = 0.0) -> None:
        self.name = name
        self.models = models
        self.token_delay_s = token_delay_s
        self.fault: str | None = None
        self.health = 200
        self.metrics_mode = "ok"
        self.signals: dict[str, float] = {"waiting": 0, "running": 0, "kv": 0.0}
        self.stats: dict[str, Any] = {"metrics_scrapes": 0, "requests": 0, "by_path": {}, "cancelled": 0, "in_flight": 0,
                                      "completed_streams": 0, "last_headers": {}}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        if path == "/healthz":
            return await _json(send, self.health, {"status": "ok" if self.health == 200 else "down"})
        if path == "/_stats":
            return await _json(send, 200, self.stats)
        if path == "/metrics":
            self.stats["metrics_scrapes"] += 1
            self.stats["metrics_authorization"] = headers.get("authorization")
            return await self._metrics(send)
        if path == "/_control":
            ctl = orjson.loads(body or b"{}")
            self.fault = ctl.get("fault", self.fault)
            self.health = ctl.get("health", self.health)
            self.metrics_mode = ctl.get("metrics", self.metrics_mode)
            self.signals.update(ctl.get("signals", {}))
            if ctl.get("reset"):
                self.stats.update(requests=0, by_path={}, cancelled=0, completed_streams=0)
            return await _json(send, 200, {"fault": self.fault, "health": self.health})
        if path == "/v1/models":
            return await _json(send, 200, {"object": "list", "data": [{"id": m, "object": "model"}
                                                                       for m in self.models]})
        self.stats["requests"] += 1
        self.stats["by_path"][path] = self.stats["by_path"].get(path, 0) + 1
        self.stats["last_headers"] = {k: v for k, v in headers.items() if k != "host"}
        self.stats["last_host"] = headers.get("host")
        self.stats["last_query"] = scope.get("query_string", b"").decode("latin-1")
        fault = headers.get("x-fake-fault") or self.fault or ""
        if fault.startswith("p:"):  # "p:0.3:500": that fault on a random 30% of requests
            _, share, fault = fault.split(":", 2)
            fault = fault if random.random() < float(share) else ""
        self.stats["in_flight"] += 1
        try:
            await self._serve(path, body, fault, receive, send)
        finally:
            self.stats["in_flight"] -= 1

    async def _metrics(self, send: Any) -> None:
        mode = self.metrics_mode
        if mode == "missing":
            return await _json(send, 404, {"error": {"message": "not found"}})
        if mode == "slow":
            await asyncio.sleep(3)
        if mode == "huge":
            body = b"# filler\n" * (1024 * 1024)
        elif mode == "garbage":
            body = os.urandom(4096).replace(b"\n", b"v") + b"\nvllm:num_requests_waiting{x} lots\n"
        elif mode == "nan":
            body = b"vllm:num_requests_waiting NaN\nvllm:num_requests_running -3\n"
        else:
            s = self.signals
            body = (f'vllm:num_requests_waiting{{model_name="m"}} {s["waiting"]}\n'
                    f'vllm:num_requests_running{{model_name="m"}} {s["running"]}\n'
                    f'vllm:kv_cache_usage_perc{{model_name="m"}} {s["kv"]}\n').encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain; version=0.0.4")]})
        await send({"type": "http.response.body", "body": body})

    async def _serve(self, path: str, body: bytes, fault: str, receive: Any, send: Any) -> None:
        if fault == "exit":
            os._exit(1)
        if fault in ("500", "503", "429"):
            return await _json(send, int(fault), {"error": {"message": f"injected {fault}",
                                                            "type": "server_error", "code": "injected"}})
        if fault.startswith("bad:"):
            status, content_type, payload = BAD_ANSWERS[fault[4:]]
            await send({"type": "http.response.start", "status": status,
                        "headers": [(b"content-type", content_type), (b"content-length", str(len(payload)).encode())]})
            return await send({"type": "http.response.body", "body": payload})
        if fault == "stall":
            # Never answers, but lets go once the client hangs up: a handler left sleeping would hold
            # this server's shutdown for the harness's whole stop timeout.
            return await _hung_up(receive)
        if fault.startswith("slow:"):
            await asyncio.sleep(float(fault[5:]))
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError:
            return await _json(send, 400, {"error": {"message": "bad json", "type": "invalid_request_error"}})
        model = req.get("model", self.models[0])
        self.stats["last_model"] = model
        if fault.startswith("rename:"):
            model = fault[7:]
        if path == "/v1/embeddings":
            inputs = req["input"] if isinstance(req["input"], list) else [req["input"]]
            data = [{"object": "embedding", "index": i, "embedding": [float(len(str(t))), 1.0, 0.0]}
                    for i, t in enumerate(inputs)]
            return await _json(send, 200, {"object": "list", "data": data, "model": model,
                                           "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}})
        n = int(req.get("max_tokens") or 8)
        words = [f"tok{i}" for i in range(n)]
        chat = path == "/v1/chat/completions"
        if chat and any(isinstance(m.get("content"), list) for m in req.get("messages") or []):
            try:
                media = media_summary(req["messages"])
            except ValueError as exc:
                return await _json(send, 400, {"error": {"message": str(exc), "type": "invalid_request_error"}})
            if media:
                self.stats["last_media"] = media
                words = ["saw"] + [f"{m['kind']}:{m['mime']}:{m['bytes']}:{m['sha256'][:16]}" for m in media]
        prompt_tokens = len(orjson.dumps(req.get("messages") or req.get("prompt"))) // 4 + 1
        if req.get("stream"):
            die_after = int(fault.split(":")[1]) if fault.startswith("die-mid-stream:") else None
            bad_end = BAD_STREAMS[fault[11:]] if fault.startswith("bad-stream:") else None
            return await self._stream(send, receive, chat, model, words, die_after, prompt_tokens,
                                      bool((req.get("stream_options") or {}).get("include_usage")), bad_end)
        text = " ".join(words)
        choice = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
                  if chat else {"index": 0, "text": text, "finish_reason": "length"})
        await _json(send, 200, {
            "id": f"cmpl-{time.time_ns()}", "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()), "model": model, "system_fingerprint": self.name, "choices": [choice],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": n, "total_tokens": prompt_tokens + n}})

    async def _stream(self, send: Any, receive: Any, chat: bool, model: str, words: list[str],
                      die_after: int | None, prompt_tokens: int, include_usage: bool,
                      bad_end: bytes | None = None) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        disconnected = asyncio.Event()

        async def watch() -> None:
            await _hung_up(receive)
            disconnected.set()

        watcher = asyncio.create_task(watch())
        try:
            for i, word in enumerate(words):
                if die_after is not None and i >= die_after:
                    raise ConnectionAbortedError("injected mid-stream death")
                if disconnected.is_set():
                    self.stats["cancelled"] += 1
                    return
                delta = {"index": 0, "delta": {"content": word + " "}, "finish_reason": None} if chat else \
                    {"index": 0, "text": word + " ", "finish_reason": None}
                chunk = {"id": "c1", "object": "chat.completion.chunk" if chat else "text_completion",
                         "created": 0, "model": model, "choices": [delta]}
                await send({"type": "http.response.body", "body": b"data: " + orjson.dumps(chunk) + b"\n\n",
                            "more_body": True})
                if self.token_delay_s:
                    try:
                        await asyncio.wait_for(disconnected.wait(), self.token_delay_s)
                    except TimeoutError:
                        pass
            head = {"id": "c1", "object": "chat.completion.chunk" if chat else "text_completion", "created": 0,
                    "model": model}
            if bad_end is not None:
                if bad_end != BAD_STREAMS["no-finish"]:
                    await send({"type": "http.response.body", "body": _finish_chunk(head, chat), "more_body": True})
                await send({"type": "http.response.body", "body": bad_end})
                return
            await send({"type": "http.response.body", "body": _finish_chunk(head, chat), "more_body": True})
            if include_usage:
                usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                         "total_tokens": prompt_tokens + len(words)}
                chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": model,
                         "choices": [], "usage": usage}
                await send({"type": "http.response.body", "body": b"data: " + orjson.dumps(chunk) + b"\n\n",
                            "more_body": True})
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
            self.stats["completed_streams"] += 1
        finally:
            watcher.cancel()


def media_summary(messages: list[Any]) -> list[dict[str, Any]]:
    """Each OpenAI media part decoded: kind, MIME type, size and digest. ValueError on a part an
    OpenAI-compatible server would refuse."""
    out = []
    for msg in messages:
        for part in msg.get("content") if isinstance(msg.get("content"), list) else []:
            kind = part.get("type")
            if kind == "text":
                continue
            if kind == "image_url":
                url = part["image_url"]["url"]
                head, _, payload = url.partition(",")
                if not head.startswith("data:") or not head.endswith(";base64"):
                    raise ValueError(f"unsupported image url {url[:32]!r}")
                mime, data = head[5:-7], base64.b64decode(payload, validate=True)
            elif kind == "input_audio":
                audio = part["input_audio"]
                mime, data = "audio/" + audio["format"], base64.b64decode(audio["data"], validate=True)
            else:
                raise ValueError(f"unknown content part type {kind!r}")
            out.append({"kind": kind, "mime": mime, "bytes": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()})
    return out


def _finish_chunk(head: dict[str, Any], chat: bool) -> bytes:
    """The event that ends a choice, as real backends send it (its finish_reason)."""
    choice = ({"index": 0, "delta": {}, "finish_reason": "length"} if chat else
              {"index": 0, "text": "", "finish_reason": "length"})
    return b"data: " + orjson.dumps({**head, "choices": [choice]}) + b"\n\n"


async def _hung_up(receive: Any) -> None:
    """Returns once the client has disconnected (the request's body already read)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _json(send: Any, status: int, payload: Any) -> None:
    body = orjson.dumps(payload)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="any 127.0.0.x is loopback: DNS tests use several")
    parser.add_argument("--name", default="fake")
    parser.add_argument("--models", default="fake-model")
    parser.add_argument("--token-delay", type=float, default=0.0)
    args = parser.parse_args()
    app = FakeBackend(args.name, args.models.split(","), args.token_delay)
    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http="httptools",
                access_log=False, log_level="error", backlog=4096)


if __name__ == "__main__":
    main()
