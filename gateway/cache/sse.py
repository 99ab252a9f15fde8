"""Convert between an OpenAI stream (SSE chunks) and the complete JSON answer the cache stores.

A streamed miss is assembled into the non-streaming response; a streamed hit is replayed from it.
Streams this module does not fully understand (tool calls, logprobs) are not cached, nor incomplete
ones (no `[DONE]`, a choice without finish_reason) or ones carrying an error or invalid JSON.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

_CHAT = "/v1/chat/completions"


def assemble(path: str, stream: bytes) -> bytes | None:
    """The JSON body a non-streaming request would have received, or None if not reproducible."""
    chat = path == _CHAT
    head: dict[str, Any] = {}
    choices: dict[int, dict[str, Any]] = {}
    usage = None
    done = False
    for line in stream.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if data == b"[DONE]":
            done = True
            continue
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(chunk, dict) or "error" in chunk:
            return None
        if not head:
            head = {k: chunk[k] for k in ("id", "created", "model", "system_fingerprint") if k in chunk}
        if chunk.get("usage"):
            usage = chunk["usage"]
        for c in chunk.get("choices") or ():
            if not _add(choices.setdefault(int(c.get("index", 0)), {"text": [], "finish": None, "role": None}),
                        c, chat):
                return None
    if not done or not choices or any(c["finish"] is None for c in choices.values()):
        return None  # incomplete: no `[DONE]`, or a choice without its finish_reason
    out: dict[str, Any] = {"id": head.get("id", "cached"), "object": "chat.completion" if chat else "text_completion",
                           "created": head.get("created", 0), "model": head.get("model")}
    if "system_fingerprint" in head:
        out["system_fingerprint"] = head["system_fingerprint"]
    out["choices"] = [_choice(i, c, chat) for i, c in sorted(choices.items())]
    if usage is not None:
        out["usage"] = usage
    return orjson.dumps(out)


def _add(acc: dict[str, Any], choice: dict[str, Any], chat: bool) -> bool:
    if choice.get("logprobs"):
        return False
    if chat:
        delta = choice.get("delta") or {}
        if set(delta) - {"role", "content", "refusal"} or delta.get("refusal"):
            return False  # tool calls and friends: not reproduced
        acc["role"] = delta.get("role") or acc["role"]
        if delta.get("content"):
            acc["text"].append(delta["content"])
    elif choice.get("text"):
        acc["text"].append(choice["text"])
    if choice.get("finish_reason"):
        acc["finish"] = choice["finish_reason"]
    return True


def _choice(index: int, acc: dict[str, Any], chat: bool) -> dict[str, Any]:
    text = "".join(acc["text"])
    if chat:
        return {"index": index, "message": {"role": acc["role"] or "assistant", "content": text},
                "finish_reason": acc["finish"]}
    return {"index": index, "text": text, "finish_reason": acc["finish"], "logprobs": None}


def replay_chunks(path: str, body: bytes, include_usage: bool) -> list[bytes]:
    """SSE events for a stored JSON answer: the content, the finish reasons, usage if asked, [DONE]."""
    data = orjson.loads(body)
    chat = path == _CHAT
    head = {"id": data.get("id", "cached"), "object": "chat.completion.chunk" if chat else "text_completion",
            "created": data.get("created", 0), "model": data.get("model")}
    if "system_fingerprint" in data:
        head["system_fingerprint"] = data["system_fingerprint"]
    content, finish = [], []
    for c in data.get("choices") or ():
        i = c.get("index", 0)
        if chat:
            message = c.get("message") or {}
            content.append({"index": i, "delta": {"role": message.get("role", "assistant"),
                                                   "content": message.get("content") or ""},
                            "finish_reason": None})
            finish.append({"index": i, "delta": {}, "finish_reason": c.get("finish_reason")})
        else:
            content.append({"index": i, "text": c.get("text") or "", "finish_reason": None, "logprobs": None})
            finish.append({"index": i, "text": "", "finish_reason": c.get("finish_reason"), "logprobs": None})
    events = [{**head, "choices": content}, {**head, "choices": finish}]
    if include_usage and data.get("usage"):
        events.append({**head, "choices": [], "usage": data["usage"]})
    return [b"data: " + orjson.dumps(e) + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


async def replay(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
