"""One generation request as the engine sees it, and the events it sends back to the API."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Hashable
from dataclasses import dataclass, field

import torch

from gpu_backend.detok import TextState

_ids = itertools.count()


@dataclass(frozen=True)
class SamplingParams:
    """Validated per-request sampling parameters (see gpu_backend.validation)."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0: no top-k cut (vLLM's extra field; -1 is taken as 0 by validation)
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False  # vLLM's extension: generate exactly max_tokens (benchmarks, tests)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def penalized(self) -> bool:
        return self.frequency_penalty != 0.0 or self.presence_penalty != 0.0


@dataclass
class Event:
    """New text for a sequence; `finish_reason` is set on its last event ("stop", "length", "abort")."""

    text: str
    completion_tokens: int
    finish_reason: str | None = None
    index: int = 0  # which choice of its request (several sequences may share one queue)
    timing: tuple[float, float] | None = None  # on a sequence's first token: (queue wait, prefill) seconds
    cached_tokens: int = 0  # prompt tokens whose KV came from the prefix cache


@dataclass(eq=False)
class Sequence:
    """Owned by the engine thread once submitted, except `cancelled` (set by the API on disconnect)
    and `events` (read by the API's coroutine; the engine puts into it via the event loop)."""

    prompt_ids: list[int]
    params: SamplingParams
    text: TextState
    events: asyncio.Queue[Event]
    index: int = 0
    id: int = field(default_factory=lambda: next(_ids))
    output_ids: list[int] = field(default_factory=list)
    cancelled: bool = False
    finish_reason: str | None = None
    arrival: float = field(default_factory=time.monotonic)
    prefill_at: float | None = None  # when its prefill began (the end of its queue wait)
    first_token_at: float | None = None
    last_token_at: float | None = None
    generator: torch.Generator | None = None
    queued_step: int = 0  # the engine's decode-step count when it was submitted
    vision: dict | None = None  # image-text-to-text models: the processor's arrays, used at prefill only
    rope_delta: int = 0  # multimodal rope: position of the next token minus its text position
    # What the prefix cache keys this prompt by, one item per position (None: prompt_ids); see prefix_cache.
    cache_key: tuple[Hashable, ...] | None = None
    cached_tokens: int = 0  # prompt tokens reused from the prefix cache (set at prefill)

    def __post_init__(self) -> None:
        if not self.params.greedy:
            # Sampling happens on the CPU so a seed gives the same tokens on any device.
            self.generator = torch.Generator(device="cpu")
            seed = self.params.seed if self.params.seed is not None else int.from_bytes(os.urandom(8), "little")
            self.generator.manual_seed(seed & 0xFFFF_FFFF_FFFF_FFFF)

    @property
    def prefix_key(self) -> tuple[Hashable, ...] | list[int]:
        return self.prompt_ids if self.cache_key is None else self.cache_key

    def cancel(self) -> None:
        """Ask the engine to drop this sequence at its next step (thread-safe: a plain flag)."""
        self.cancelled = True
