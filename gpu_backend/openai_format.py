"""OpenAI response and stream-chunk shapes for completions and chat completions."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass


def usage(prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict[str, object]:
    """OpenAI's usage object; `cached_tokens`: prompt tokens served from the prefix cache."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens}}


def sse(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


@dataclass
class Shape:
    """Builds the objects of one response; `chat` selects chat.completion vs text_completion."""

    chat: bool
    model: str

    def __post_init__(self) -> None:
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())

    def _base(self, obj: str) -> dict:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def response(self, texts: list[str], reasons: list[str | None], prompt_tokens: int,
                 completion_tokens: int, cached_tokens: int = 0) -> dict:
        if self.chat:
            choices = [{"index": i, "message": {"role": "assistant", "content": t}, "logprobs": None,
                        "finish_reason": r} for i, (t, r) in enumerate(zip(texts, reasons, strict=True))]
            body = self._base("chat.completion")
        else:
            choices = [{"index": i, "text": t, "logprobs": None, "finish_reason": r}
                       for i, (t, r) in enumerate(zip(texts, reasons, strict=True))]
            body = self._base("text_completion")
        return {**body, "choices": choices, "usage": usage(prompt_tokens, completion_tokens, cached_tokens)}

    def chunk(self, index: int, text: str | None, finish_reason: str | None, *, role: bool = False,
              with_usage: bool = False) -> dict:
        """One streamed choice delta (`role` opens a chat choice; text None gives an empty delta)."""
        if self.chat:
            delta: dict = {"role": "assistant", "content": ""} if role else {}
            if text:
                delta["content"] = text
            choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            body = self._base("chat.completion.chunk")
        else:
            choice = {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
            body = self._base("text_completion")
        body["choices"] = [choice]
        if with_usage:
            body["usage"] = None
        return body

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> dict:
        body = self._base("chat.completion.chunk" if self.chat else "text_completion")
        return {**body, "choices": [], "usage": usage(prompt_tokens, completion_tokens, cached_tokens)}
