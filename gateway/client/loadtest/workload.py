"""What each request asks: prompts (built in, or one JSON object per line of a file) made into bodies."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

# Varied lengths so a run is not one cache key or one sequence length.
DEFAULT_PROMPTS = [
    "Say hello.",
    "Name three colours.",
    "Explain what an API gateway does in one sentence.",
    "Write a haiku about load testing.",
    "List the planets of the solar system.",
    "Give two tips for writing readable Python code, briefly.",
    "What is the capital of France? Answer in one word.",
    "Summarise why rate limits protect a shared inference service.",
]


class WorkloadError(ValueError):
    """A prompts file that cannot be used (the message names the file and line)."""


def load_prompts(path: Path | None) -> list[dict[str, Any]]:
    """Prompt records: `{"messages": [...]}` or `{"prompt": "..."}`, optionally with `max_tokens`.

    A line may also be a bare JSON string (a user message). Blank lines are skipped.
    """
    if path is None:
        return [{"prompt": p} for p in DEFAULT_PROMPTS]
    records: list[dict[str, Any]] = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise WorkloadError(f"{path}: {exc.strerror}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise WorkloadError(f"{path}:{number}: not valid JSON") from None
        if isinstance(item, str):
            item = {"prompt": item}
        if not isinstance(item, dict) or not (isinstance(item.get("prompt"), str)
                                              or isinstance(item.get("messages"), list)):
            raise WorkloadError(f"{path}:{number}: expected a string or an object with 'prompt' or 'messages'")
        records.append(item)
    if not records:
        raise WorkloadError(f"{path}: no prompts")
    return records


class Workload:
    """Request bodies for chat (`messages`) or completions (`prompt`), cycling through the prompts."""

    def __init__(self, prompts: list[dict[str, Any]], model: str, max_tokens: int, stream: bool,
                 chat: bool, temperature: float | None, seed: int = 0) -> None:
        order = list(prompts)
        random.Random(seed).shuffle(order)
        self._cycle: Iterator[dict[str, Any]] = itertools.cycle(order)
        self.model = model
        self.max_tokens = max_tokens
        self.stream = stream
        self.chat = chat
        self.temperature = temperature

    def next_body(self) -> bytes:
        record = next(self._cycle)
        body: dict[str, Any] = {"model": self.model, "max_tokens": int(record.get("max_tokens", self.max_tokens))}
        if self.chat:
            body["messages"] = record.get("messages") or [{"role": "user", "content": record["prompt"]}]
        else:
            body["prompt"] = record.get("prompt") or " ".join(str(m.get("content", "")) for m in record["messages"])
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return orjson.dumps(body)
