"""Iteration-level (continuous) batching on one engine thread.

Between two decode steps the engine drops cancelled sequences, prefills waiting ones (several at once,
left-padded) and merges them into the running batch; each step then decodes one token for every running
sequence in a single forward pass, and finished sequences leave immediately. The HTTP side only submits
sequences and reads their event queues, so the event loop never blocks on the model.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

import torch

from gpu_backend.detok import TextState
from gpu_backend.kv import BatchKV, cache_with_past, check_cache_internals, row_states
from gpu_backend.metrics import BackendMetrics
from gpu_backend.prefix_cache import CachedBlock, PrefixCache
from gpu_backend.sampling import next_tokens
from gpu_backend.sequence import Event, SamplingParams, Sequence
from gpu_backend.vision_batch import VisionBatch

log = logging.getLogger("edgegw.backend.engine")


class QueueFull(Exception):
    """The engine holds max_batch_size running plus max_queue waiting sequences already."""


class Engine:
    """Owns the model on a background thread; `submit` and `Sequence.cancel` are safe from any thread."""

    def __init__(self, model: Any, tokenizer: Any, *, context_len: int, max_batch_size: int = 32,
                 max_queue: int = 256, prefill_tokens: int = 2048, max_waiting_steps: int = 4,
                 prefix_cache_bytes: int = 0, metrics: BackendMetrics | None = None, vision: bool = False) -> None:
        check_cache_internals()
        self.model = model
        self.tokenizer = tokenizer
        self.device = next(model.parameters()).device
        self.context_len = context_len
        self.max_batch_size = max_batch_size
        self.max_queue = max_queue
        self.prefill_tokens = prefill_tokens
        self.max_waiting_steps = max_waiting_steps
        self._steps = 0  # decode steps so far (for admission deferral)
        self.metrics = metrics or BackendMetrics("model")
        self.eos_ids = _eos_ids(model, tokenizer)
        self.pad_id = _pad_id(tokenizer, self.eos_ids)
        # Ids the model can emit but the tokenizer cannot decode (a padded embedding matrix) are masked.
        vocab = model.config.get_text_config().vocab_size
        self.vocab_limit = len(tokenizer) if vocab > len(tokenizer) else None
        self._vision = VisionBatch(model) if vision else None
        # transformers 5.x renamed `past_key_values` to `cache`; accept either spelling.
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        # With SDPA a decode step's mask is just the padding mask as a 4-D boolean; building it here skips
        # transformers' generic mask construction, a measurable share of a small model's step.
        self._bool_mask = getattr(model.config, "_attn_implementation", None) == "sdpa"
        self._cond = threading.Condition()
        self._waiting: deque[Sequence] = deque()
        self._outstanding = 0
        self._running: list[Sequence] = []
        self._kv = BatchKV()
        # Image-text-to-text prompts reuse only the positions before their first image (VisionBatch).
        self.prefix_cache = PrefixCache(prefix_cache_bytes)
        self._stop = False
        self._thread: threading.Thread | None = None
        self._deliver: Callable[[list[tuple[Sequence, Event]]], None] | None = None
        self._ship_every_step = False
        self._pending: list[tuple[Sequence, Event]] = []

    # ---- API side ---------------------------------------------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop | None = None,
              deliver: Callable[[list[tuple[Sequence, Event]]], None] | None = None) -> None:
        """Start the engine thread. Each step's events go to the sequences' queues on `loop`, or to
        `deliver` (called on the engine thread after every step, also without events: see remote.py)."""
        if deliver is None:
            assert loop is not None
            deliver = lambda batch: loop.call_soon_threadsafe(_deliver, batch)  # noqa: E731
        else:
            self._ship_every_step = True
        self._deliver = deliver
        self._thread = threading.Thread(target=self._run, name="edgegw-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread:
            self._thread.join(30)

    def submit(self, prompt_ids: list[int], params: SamplingParams, events: asyncio.Queue[Event] | None = None,
               index: int = 0, seq_id: int | None = None, vision: dict | None = None,
               cache_key: tuple[Hashable, ...] | None = None) -> Sequence:
        """Queue a sequence; raises QueueFull when the engine is at capacity. Its events go to `events`
        (shared by the choices of one request, told apart by `index`), or to a new queue. `vision`: the
        processor's image arrays for the prompt (image-text-to-text models). `cache_key` replaces the token
        ids as the prefix cache's key (one item per position; see prefix_cache)."""
        if cache_key is not None and len(cache_key) != len(prompt_ids):
            raise ValueError("cache_key must have one item per prompt position")
        text = TextState(self.tokenizer, list(params.stop))
        seq = Sequence(prompt_ids, params, text, events if events is not None else asyncio.Queue(), index=index,
                       vision=vision, cache_key=cache_key)
        if seq_id is not None:
            seq.id = seq_id
        if self._vision is not None:
            seq.cacheable = self._vision.cacheable(prompt_ids, vision)
        seq.queued_step = self._steps
        with self._cond:
            if self._outstanding >= self.max_batch_size + self.max_queue:
                raise QueueFull
            self._outstanding += 1
            self._waiting.append(seq)
            self._cond.notify()
        self.metrics.prompt_tokens.inc(len(prompt_ids))
        return seq

    def cancel(self, seq: Sequence) -> None:
        seq.cancel()
        with self._cond:
            self._cond.notify()

    @property
    def outstanding(self) -> int:
        """Sequences submitted and not yet finished (waiting + running)."""
        return self._outstanding

    # ---- engine thread ----------------------------------------------------------------------------------

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cond:
                    while not self._stop and not self._waiting and not self._running:
                        self._cond.wait()
                    if self._stop:
                        break
                try:
                    self._step()
                except Exception as exc:  # keep serving: fail the affected sequences, not the process
                    log.exception("engine step failed")
                    self._fail_all(exc)
                self._update_gauges()
                self._flush()

    def _step(self) -> None:
        self._reap_cancelled()
        self._admit()
        if self._pending:
            # The new sequences' first tokens leave now, not after the decode step that follows: a decode
            # step is a whole forward pass of time to first token.
            self._flush()
        if self._running:
            self._decode()

    def _reap_cancelled(self) -> None:
        with self._cond:
            dropped = [s for s in self._waiting if s.cancelled]
            for s in dropped:
                self._waiting.remove(s)
        for s in dropped:
            self._finish(s, "abort")
        if any(s.cancelled for s in self._running):
            keep = [i for i, s in enumerate(self._running) if not s.cancelled]
            for s in self._running:
                if s.cancelled:
                    self._finish(s, "abort")
            self._running = [self._running[i] for i in keep]
            self._kv.keep(keep)

    def _admit(self) -> None:
        """Prefill as many waiting sequences as fit (batch slots and a padded-token budget)."""
        group: list[tuple[Sequence, list[CachedBlock]]] = []
        with self._cond:
            if not self._admit_now():
                return
            while self._waiting and len(self._running) + len(group) < self.max_batch_size:
                nxt = self._waiting[0]
                hit = self.prefix_cache.match(nxt.lookup_key)
                widest = max(self._uncached(s, chain) for s, chain in [*group, (nxt, hit)])
                if group and widest * (len(group) + 1) > self.prefill_tokens:
                    break
                group.append((self._waiting.popleft(), hit))
        if group:
            self._prefill(group)

    def _uncached(self, seq: Sequence, hit: list[CachedBlock]) -> int:
        return len(seq.prompt_ids) - len(hit) * self.prefix_cache.block_tokens

    def _prefill(self, group: list[tuple[Sequence, list[CachedBlock]]]) -> None:
        """One forward pass over the group's prompts, left-padded, on top of their prefix-cache hits.

        Every row computes its last `width` positions, the widest uncached suffix in the group, and takes
        the positions before those from the cache: a row whose hit is longer than it needs recomputes part
        of it for free (the pass is `width` wide anyway), and the rows stay contiguous, like the batch.
        """
        seqs = [s for s, _ in group]
        started = time.monotonic()
        for s in seqs:
            s.prefill_at = started
        width = max(self._uncached(s, hit) for s, hit in group)
        reused = [max(0, len(s.prompt_ids) - width) for s in seqs]
        past = max(reused)
        total = past + width
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), total), dtype=torch.long)
        for row, s in enumerate(seqs):
            fresh = s.prompt_ids[len(s.prompt_ids) - min(width, len(s.prompt_ids)):]
            ids[row, width - len(fresh):] = torch.tensor(fresh)
            mask[row, total - len(s.prompt_ids):] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, past:]
        from transformers import DynamicCache

        if past:
            pasts = [([b.kv for b in hit], n) for (_, hit), n in zip(group, reused, strict=True)]
            cache = cache_with_past(pasts, past, width)
        else:
            cache = DynamicCache(config=self.model.config)
        try:
            images: dict[str, torch.Tensor] = {}
            if self._vision is not None:
                images, positions = self._vision.prefill(seqs, ids, mask, positions)
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                             logits_to_keep=1, **{self._cache_kw: cache}, **images)
        except Exception:
            for s in seqs:
                self._finish(s, "error")
            raise
        for row, (s, n) in enumerate(zip(seqs, reused, strict=True)):
            s.cached_tokens = n
            self.metrics.prefix_cache_queries.inc(len(s.prompt_ids))
            self.metrics.prefix_cache_hits.inc(n)
            offset = total - len(s.prompt_ids)
            self.prefix_cache.store(s.store_key, lambda a, b, row=row, offset=offset:
                                    row_states(cache, row, offset + a, offset + b))
        self._kv.add(cache, mask)
        self._running.extend(seqs)
        self._accept(seqs, len(self._running) - len(seqs), out.logits[:, -1, :])

    def _admit_now(self) -> bool:
        """Whether to prefill now. Each prefill is an extra forward pass that stalls every running
        sequence, so while a batch runs, arrivals are gathered for up to `max_waiting_steps` decode steps
        (or until they are half as many as the running ones) and prefilled together, as TGI does with
        max_waiting_tokens."""
        if not self._waiting:
            return False
        if not self._running:
            return True
        waited = self._steps - self._waiting[0].queued_step
        return waited >= self.max_waiting_steps or 2 * len(self._waiting) >= len(self._running)

    def _decode(self) -> None:
        self.metrics.batch_size.observe(len(self._running))
        self._steps += 1
        last = torch.tensor([[s.output_ids[-1]] for s in self._running], device=self.device)
        mask, positions = self._kv.step_inputs()
        if self._vision is not None:
            positions = self._vision.decode_positions(positions, self._running)
        if self._bool_mask:
            mask = mask.bool()[:, None, None, :]
        out = self.model(input_ids=last, attention_mask=mask, position_ids=positions, use_cache=True,
                         logits_to_keep=1, **{self._cache_kw: self._kv.cache})
        self._accept(self._running, 0, out.logits[:, -1, :])

    def _accept(self, seqs: list[Sequence], first_row: int, logits: torch.Tensor) -> None:
        """Append one sampled token to each of `seqs` (rows first_row.. of the batch); retire finished ones."""
        if self.vocab_limit is not None:
            logits[:, self.vocab_limit:] = float("-inf")
        tokens = next_tokens(logits, seqs)
        now = time.monotonic()
        done: set[int] = set()
        for offset, (seq, tok) in enumerate(zip(seqs, tokens, strict=True)):
            seq.output_ids.append(tok)
            timing = None
            if seq.first_token_at is None:
                seq.first_token_at = now
                self.metrics.ttft.observe(now - seq.arrival)
                prefill_at = seq.prefill_at if seq.prefill_at is not None else seq.arrival
                timing = (prefill_at - seq.arrival, now - prefill_at)  # for the request's trace spans
            else:
                self.metrics.itl.observe(now - seq.last_token_at)
            seq.last_token_at = now
            reason = None
            if tok in self.eos_ids and not seq.params.ignore_eos:
                reason = "stop"
            elif (len(seq.output_ids) >= seq.params.max_tokens
                  or len(seq.prompt_ids) + len(seq.output_ids) >= self.context_len):
                reason = "length"
            ids = seq.output_ids[:-1] if reason == "stop" else seq.output_ids
            delta, stopped = seq.text.update(ids, final=reason is not None)
            if stopped:
                reason = "stop"
            self._emit(seq, Event(delta, len(seq.output_ids), reason, timing=timing,
                                  cached_tokens=seq.cached_tokens))
            if reason is not None:
                done.add(first_row + offset)
                self._finish(seq, reason, emit=False)
        self.metrics.generation_tokens.inc(len(seqs))
        if done:
            for row in done:
                self._remember(self._running[row], row)
            keep = [i for i in range(len(self._running)) if i not in done]
            self._running = [self._running[i] for i in keep]
            self._kv.keep(keep)

    def _remember(self, seq: Sequence, row: int) -> None:
        """Cache the blocks a finished sequence computed past its prompt: a conversation's next turn starts
        with this answer. The last sampled token was never fed to the model, so it has no KV. An answer
        after an image is not cached (only what precedes a prompt's first image is)."""
        if seq.cacheable is not None:
            return
        tokens = [*seq.prefix_key, *seq.output_ids[:-1]]
        offset = self._kv.length - len(tokens)
        self.prefix_cache.store(tokens, lambda a, b: row_states(self._kv.cache, row, offset + a, offset + b))

    def _finish(self, seq: Sequence, reason: str, emit: bool = True) -> None:
        seq.finish_reason = reason
        if emit:
            self._emit(seq, Event("", len(seq.output_ids), reason, cached_tokens=seq.cached_tokens))
        with self._cond:
            self._outstanding -= 1
        self.metrics.finished(reason, time.monotonic() - seq.arrival)

    def _fail_all(self, exc: Exception) -> None:
        for seq in [*self._running]:
            self._finish(seq, "error")
        self._running = []
        self._kv = BatchKV()
        self.prefix_cache.clear()  # the failure may have been memory: give back what the cache holds

    def _emit(self, seq: Sequence, event: Event) -> None:
        event.index = seq.index
        self._pending.append((seq, event))

    def _flush(self) -> None:
        """Hand this step's events to the event loop in one call (one wake-up per step, not per token)."""
        if (not self._pending and not self._ship_every_step) or self._deliver is None:
            return
        batch, self._pending = self._pending, []
        try:
            self._deliver(batch)
        except (RuntimeError, OSError):  # the loop or the pipe closed during shutdown
            pass

    def _update_gauges(self) -> None:
        capacity = self.max_batch_size * self.context_len
        self.metrics.set_state(waiting=len(self._waiting), running=len(self._running),
                               kv_usage=self._kv.tokens() / capacity if capacity else 0.0)


def _deliver(batch: list[tuple[Sequence, Event]]) -> None:
    for seq, event in batch:
        seq.events.put_nowait(event)


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value)
    return ids


def _pad_id(tokenizer: Any, eos_ids: set[int]) -> int:
    if tokenizer.pad_token_id is not None:
        return int(tokenizer.pad_token_id)
    return min(eos_ids) if eos_ids else 0
