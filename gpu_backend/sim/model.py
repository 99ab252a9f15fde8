"""The simulated replica: timing, scheduling and prefix cache, modelled like llm-d-inference-sim.

- Prompt tokens: the canonical prompt (chat messages in order, role marks, text; an image part as
  `image_tokens` tokens derived from its content) at `CHARS_PER_TOKEN` bytes a token, cut into
  blocks of `block_tokens`, each block's hash chained over the ones before (as vLLM's prefix cache).
- KV and prefix cache: `kv_blocks` blocks hold the running requests' prompt blocks (shared between
  requests with the same prefix, as vLLM's are) and their output, and, in what is left, an LRU of
  earlier prompts' blocks. A request's cached tokens are its leading blocks found there.
- Scheduling: a FCFS waiting queue; at most `max_num_seqs` requests run. Prefill is one lane per
  replica (compute-bound: prompts are prefilled one after another): `prefill_overhead_s +
  uncached tokens x prefill_per_token_s`. Decode runs for the whole batch at once; its inter-token
  latency grows linearly with the running batch, `itl_s` for one request up to
  `itl_s x itl_factor_at_max` at `max_num_seqs` (llm-d-inference-sim's time-factor-under-load).
- `time_scale` multiplies every modelled duration (a slower clock, so a busy 2-core machine keeps up);
  figures measured against it are divided by it again.
"""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any

CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class SimConfig:
    """One replica's knobs (docs/backend.md, "Simulated backend", says how they are sized)."""

    max_num_seqs: int = 64
    kv_blocks: int = 700
    block_tokens: int = 16
    prefill_overhead_s: float = 0.010
    prefill_per_token_s: float = 0.0001
    itl_s: float = 0.020
    itl_factor_at_max: float = 2.0
    image_tokens: int = 800
    default_max_tokens: int = 32
    time_scale: float = 1.0


@dataclass(slots=True)
class Request:
    blocks: list[bytes]
    prompt_tokens: int
    max_tokens: int
    cached_tokens: int = 0
    generated: int = 0
    holding: bool = False  # its prompt blocks are counted in use
    admitted: asyncio.Event = field(default_factory=asyncio.Event)


def prompt_blocks(body: dict[str, Any], config: SimConfig) -> tuple[list[bytes], int]:
    """The prompt's chained block hashes and its token count."""
    stream = bytearray()
    messages = body.get("messages")
    if isinstance(messages, list):
        for msg in messages:
            if not isinstance(msg, dict):
                continue
            stream += b"\x1e" + str(msg.get("role", "")).encode() + b"\x1f"
            content = msg.get("content")
            if isinstance(content, str):
                stream += content.encode("utf-8", "surrogatepass")
                continue
            for part in content if isinstance(content, list) else []:
                if not isinstance(part, dict):
                    continue
                if part.get("type") == "text":
                    stream += str(part.get("text", "")).encode("utf-8", "surrogatepass")
                elif part.get("type") == "image_url":
                    image = part.get("image_url")
                    url = str(image.get("url", "") if isinstance(image, dict) else image)
                    digest = blake2b(url.encode(), digest_size=32).digest()
                    reps = config.image_tokens * CHARS_PER_TOKEN // len(digest)
                    stream += digest * reps
    else:
        prompt = body.get("prompt")
        stream += str(prompt[0] if isinstance(prompt, list) and prompt else prompt or "").encode()
    tokens = max(1, math.ceil(len(stream) / CHARS_PER_TOKEN))
    size = config.block_tokens * CHARS_PER_TOKEN
    h = blake2b(str(body.get("model", "")).encode(), digest_size=16)
    view = memoryview(stream)
    blocks = []
    for at in range(0, len(stream) - size + 1, size):  # full blocks only, as vLLM caches
        h.update(view[at:at + size])
        blocks.append(h.copy().digest())
    return blocks, tokens


class Replica:
    """One simulated model server: its queue, running batch, prefill lane and prefix cache."""

    def __init__(self, name: str, config: SimConfig) -> None:
        self.name = name
        self.config = config
        self.cache: OrderedDict[bytes, None] = OrderedDict()  # every block held, in use or not, LRU first
        self._in_use: dict[bytes, int] = {}  # block -> running requests holding it
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self._prefill_lane = asyncio.Lock()
        # The other replicas of the pool (set by `serve`): a request that finds all of them with a free
        # batch slot is one a balancer could have sent anywhere (`requests_others_free`).
        self.siblings: list[Replica] = []
        self.stats = {"requests": 0, "requests_others_free": 0, "prompt_tokens": 0, "cached_tokens": 0,
                      "generation_tokens": 0, "queries": 0, "hits": 0}

    # --- signals --------------------------------------------------------------------------------

    def _decode_blocks(self) -> int:
        return sum(math.ceil(r.generated / self.config.block_tokens) for r in self.running)

    @property
    def has_free_slot(self) -> bool:
        """A new request would run at once (no queue; vLLM's running batch is below `max_num_seqs`)."""
        return len(self.running) < self.config.max_num_seqs

    @property
    def kv_usage(self) -> float:
        return min(1.0, (len(self._in_use) + self._decode_blocks()) / self.config.kv_blocks)

    # --- the request's life ---------------------------------------------------------------------

    def submit(self, blocks: list[bytes], prompt_tokens: int, max_tokens: int) -> Request:
        req = Request(blocks, prompt_tokens, max_tokens)
        self.stats["requests"] += 1
        if all(o.has_free_slot for o in self.siblings if o is not self):
            self.stats["requests_others_free"] += 1
        self.waiting.append(req)
        self._admit()
        return req

    def _admit(self) -> None:
        while self.waiting and len(self.running) < self.config.max_num_seqs:
            req = self.waiting.popleft()
            self.running.append(req)
            req.admitted.set()

    async def prefill(self, req: Request) -> None:
        """Wait for a batch slot and the prefill lane; look the prompt up in the cache; prefill the rest."""
        await req.admitted.wait()
        async with self._prefill_lane:
            hit = 0
            for block in req.blocks:
                if block not in self.cache:
                    break
                hit += 1
            req.cached_tokens = min(hit * self.config.block_tokens, req.prompt_tokens)
            uncached = req.prompt_tokens - req.cached_tokens
            self.stats["prompt_tokens"] += req.prompt_tokens
            self.stats["cached_tokens"] += req.cached_tokens
            self.stats["queries"] += req.prompt_tokens
            self.stats["hits"] += req.cached_tokens
            c = self.config
            for block in req.blocks:
                self._in_use[block] = self._in_use.get(block, 0) + 1
            req.holding = True
            await asyncio.sleep((c.prefill_overhead_s + uncached * c.prefill_per_token_s) * c.time_scale)
            self._insert(req.blocks)

    def _insert(self, blocks: list[bytes]) -> None:
        cache = self.cache
        for block in reversed(blocks):  # the first blocks most recent: evicted last
            cache[block] = None
            cache.move_to_end(block)
        room = self.config.kv_blocks - self._decode_blocks()
        skipped = 0  # blocks in use are not evicted: they go to the back, at most once each
        while len(cache) > room and skipped < len(cache):
            block, _ = cache.popitem(last=False)
            if block in self._in_use:
                cache[block] = None
                skipped += 1

    def itl(self) -> float:
        c = self.config
        load = (len(self.running) - 1) / max(1, c.max_num_seqs - 1)
        return c.itl_s * (1 + (c.itl_factor_at_max - 1) * min(1.0, load)) * c.time_scale

    def finish(self, req: Request) -> None:
        if req in self.running:
            self.running.remove(req)
            if req.holding:
                req.holding = False
                for block in req.blocks:
                    left = self._in_use.get(block, 0) - 1
                    if left > 0:
                        self._in_use[block] = left
                    else:
                        self._in_use.pop(block, None)
        elif req in self.waiting:
            self.waiting.remove(req)
        self.stats["generation_tokens"] += req.generated
        self._admit()

    def metrics(self, model: str) -> bytes:
        """vLLM's names (what the gateway's `inference` balancer scrapes)."""
        label = f'{{model_name="{model}"}}'
        s = self.stats
        lines = [
            "# TYPE vllm:num_requests_running gauge", f"vllm:num_requests_running{label} {len(self.running)}",
            "# TYPE vllm:num_requests_waiting gauge", f"vllm:num_requests_waiting{label} {len(self.waiting)}",
            "# TYPE vllm:kv_cache_usage_perc gauge", f"vllm:kv_cache_usage_perc{label} {self.kv_usage:.4f}",
            "# TYPE vllm:prefix_cache_queries counter", f"vllm:prefix_cache_queries_total{label} {s['queries']}",
            "# TYPE vllm:prefix_cache_hits counter", f"vllm:prefix_cache_hits_total{label} {s['hits']}",
            "# TYPE vllm:prompt_tokens counter", f"vllm:prompt_tokens_total{label} {s['prompt_tokens']}",
            "# TYPE vllm:generation_tokens counter",
            f"vllm:generation_tokens_total{label} {s['generation_tokens']}",
        ]
        return ("\n".join(lines) + "\n").encode()
