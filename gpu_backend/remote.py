"""The engine in its own process, so the model loop never competes with HTTP for the GIL.

In one process the engine thread and the event loop share the GIL: every torch op releases it, the event
loop grabs it to write SSE chunks, and the engine waits to get it back. On a small machine that costs more
than the model itself for small models. As in vLLM (API server + engine core), the HTTP process keeps
tokenization, validation and streaming; a child process owns the model and runs `Engine` unchanged.

Wire protocol (two one-way pipes): commands ("submit", id, prompt_ids, params, image arrays or None,
cache_key), ("cancel", id), ("stop",);
replies ("ready", info), ("failed", message), and ("steps", [("step", events, metric_records), ...]) with
every engine step since the last message (a sender thread batches them when the reader falls behind).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing as mp
import queue
import threading
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from gpu_backend.metrics import BackendMetrics
from gpu_backend.sequence import Event, SamplingParams

log = logging.getLogger("edgegw.backend.remote")


@dataclass(frozen=True)
class EngineSpec:
    """What the engine process needs to load the model and run the scheduler."""

    model_dir: str
    device: str
    dtype: str
    threads: int | None
    context_len: int
    max_batch_size: int
    prefill_tokens: int
    max_waiting_steps: int
    vision: bool = False  # an image-text-to-text model (gpu_backend.vlm)
    prefix_cache_bytes: int = 0


@dataclass(eq=False)
class Handle:
    """The HTTP side's view of a sequence running in the engine process (same fields the API reads)."""

    id: int
    index: int
    events: asyncio.Queue[Event]
    finish_reason: str | None = None
    cancelled: bool = False


class RemoteEngine:
    """Same interface as `Engine` for the API (`submit`, `cancel`, `outstanding`, `stop`)."""

    def __init__(self, spec: EngineSpec, metrics: BackendMetrics, max_queue: int) -> None:
        from gpu_backend.engine import QueueFull

        self._queue_full = QueueFull
        self.spec = spec
        self.metrics = metrics
        self.max_batch_size = spec.max_batch_size
        self.max_queue = max_queue
        self.info: dict[str, Any] = {}
        self._ids = itertools.count(1)
        self._handles: dict[int, Handle] = {}
        self._outstanding = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        ctx = mp.get_context("spawn")  # CUDA cannot be used in a forked child
        self._cmd_recv, self._cmd = ctx.Pipe(duplex=False)
        self._out, self._out_send = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(target=_engine_main, args=(spec, self._cmd_recv, self._out_send),
                                 name="edgegw-engine", daemon=True)
        self.on_exit: Any = None  # called (on the loop) if the engine process dies

    def launch(self) -> dict[str, Any]:
        """Start the process and block until the model is loaded; raises if it fails."""
        self._proc.start()
        # Close our copies of the child's ends: only then does the child's death reach us as EOF.
        self._out_send.close()
        self._cmd_recv.close()
        try:
            kind, payload = self._out.recv()
        except EOFError:
            kind, payload = "failed", f"exited with code {self._proc.exitcode}"
        if kind != "ready":
            self._proc.join(10)
            raise RuntimeError(f"engine process failed: {payload}")
        self.info = payload
        return payload

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        threading.Thread(target=self._receive, name="edgegw-engine-rx", daemon=True).start()

    def submit(self, prompt_ids: list[int], params: SamplingParams, events: asyncio.Queue[Event] | None = None,
               index: int = 0, vision: dict | None = None, cache_key: tuple[Hashable, ...] | None = None) -> Handle:
        if self._outstanding >= self.max_batch_size + self.max_queue:
            raise self._queue_full
        handle = Handle(next(self._ids), index, events if events is not None else asyncio.Queue())
        self._handles[handle.id] = handle
        self._outstanding += 1
        try:
            self._cmd.send(("submit", handle.id, prompt_ids, params, vision, cache_key))
        except OSError as exc:  # the engine process is gone; _on_engine_exit will stop the server
            del self._handles[handle.id]
            self._outstanding -= 1
            raise RuntimeError("the engine process is not running") from exc
        return handle

    def cancel(self, handle: Any) -> None:
        if handle.finish_reason is None and not handle.cancelled:
            handle.cancelled = True
            try:
                self._cmd.send(("cancel", handle.id))
            except OSError:
                pass  # the engine process is gone: nothing left to cancel

    @property
    def outstanding(self) -> int:
        return self._outstanding

    def stop(self) -> None:
        try:
            self._cmd.send(("stop",))
        except OSError:
            pass
        self._proc.join(30)
        if self._proc.is_alive():
            self._proc.kill()

    def _receive(self) -> None:
        """Reader thread: hands each step's message to the event loop."""
        try:
            while True:
                msg = self._out.recv()
                self._loop.call_soon_threadsafe(self._on_step, msg)
        except (EOFError, OSError):
            self._loop.call_soon_threadsafe(self._on_engine_exit)

    def _on_step(self, msg: tuple) -> None:
        for _, events, records in msg[1]:
            self._apply(events, records)

    def _apply(self, events: list, records: list) -> None:
        for seq_id, text, tokens, reason, timing, cached in events:
            handle = self._handles.get(seq_id)
            if handle is None:
                continue
            handle.events.put_nowait(Event(text, tokens, reason, handle.index, timing, cached))
            if reason is not None:
                handle.finish_reason = reason
                del self._handles[seq_id]
                self._outstanding -= 1
        replay(self.metrics, records)

    def _on_engine_exit(self) -> None:
        for handle in list(self._handles.values()):
            handle.finish_reason = "error"
            handle.events.put_nowait(Event("", 0, "error", handle.index))
        self._handles.clear()
        self._outstanding = 0
        if self.on_exit is not None:
            self.on_exit()


class RecordingMetrics:
    """Stands in for BackendMetrics inside the engine process: records calls to replay in the HTTP one."""

    def __init__(self) -> None:
        self.log: deque[tuple[str, str, Any]] = deque()
        for name in ("ttft", "itl", "batch_size", "generation_tokens", "prompt_tokens", "prefix_cache_queries",
                     "prefix_cache_hits"):
            setattr(self, name, _Recorder(self.log, name))

    def finished(self, reason: str, e2e_s: float) -> None:
        self.log.append(("finished", "", (reason, e2e_s)))

    def set_state(self, **state: Any) -> None:
        self.log.append(("set_state", "", state))

    def drain(self) -> list[tuple[str, str, Any]]:
        out = []
        while self.log:
            out.append(self.log.popleft())
        return out


@dataclass
class _Recorder:
    log: deque = field(repr=False)
    name: str

    def observe(self, value: float) -> None:
        self.log.append((self.name, "observe", value))

    def inc(self, value: float = 1) -> None:
        self.log.append((self.name, "inc", value))


def replay(metrics: BackendMetrics, records: list[tuple[str, str, Any]]) -> None:
    for name, method, arg in records:
        if name == "finished":
            metrics.finished(*arg)
        elif name == "set_state":
            metrics.set_state(**arg)
        else:
            getattr(getattr(metrics, name), method)(arg)


def _engine_main(spec: EngineSpec, cmd: Any, out: Any) -> None:
    """Entry point of the engine process."""
    import os
    import signal
    from pathlib import Path

    # The HTTP process decides when the engine stops (after draining): a SIGTERM sent to the whole process
    # group must not kill in-flight generation. If the parent dies, the command pipe closes and we exit.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers.utils import logging as hf_logging

        from gpu_backend.device import configure_threads, resolve_device, resolve_dtype
        from gpu_backend.engine import Engine
        from gpu_backend.models import load_causal_lm
        from gpu_backend.vlm import load_vision_model

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
        configure_threads(spec.threads)
        device = resolve_device(spec.device)
        dtype = resolve_dtype(spec.dtype, device)
        model, tokenizer = (load_vision_model if spec.vision else load_causal_lm)(Path(spec.model_dir), device, dtype)
        metrics = RecordingMetrics()
        # Admission control happens in the HTTP process; here the queue is unbounded.
        engine = Engine(model, tokenizer, context_len=spec.context_len, max_batch_size=spec.max_batch_size,
                        max_queue=1 << 30, prefill_tokens=spec.prefill_tokens,
                        max_waiting_steps=spec.max_waiting_steps, prefix_cache_bytes=spec.prefix_cache_bytes,
                        metrics=metrics, vision=spec.vision)
    except Exception as exc:
        out.send(("failed", f"{type(exc).__name__}: {exc}"))
        return
    seqs: dict[int, Any] = {}
    outbox: queue.SimpleQueue = queue.SimpleQueue()

    def deliver(batch: list) -> None:
        events = [(seq.id, ev.text, ev.completion_tokens, ev.finish_reason, ev.timing, ev.cached_tokens)
                  for seq, ev in batch]
        for seq, ev in batch:
            if ev.finish_reason is not None:
                seqs.pop(seq.id, None)
        records = metrics.drain()
        if events or records:
            outbox.put(("step", events, records))

    def sender() -> None:
        # Writing to the pipe can block until the HTTP process reads; the engine thread must not wait.
        while True:
            msg = outbox.get()
            if msg is None:
                return
            batch = [msg]
            while not outbox.empty() and len(batch) < 64:
                nxt = outbox.get()
                if nxt is None:
                    outbox.put(None)
                    break
                batch.append(nxt)
            try:
                out.send(("steps", batch))
            except OSError:
                return

    threading.Thread(target=sender, name="edgegw-engine-tx", daemon=True).start()
    engine.start(deliver=deliver)
    out.send(("ready", {"device": f"{device} ({str(dtype).removeprefix('torch.')})"}))
    try:
        while True:
            msg = cmd.recv()
            if msg[0] == "submit":
                _, seq_id, prompt_ids, params, vision, cache_key = msg
                seqs[seq_id] = engine.submit(prompt_ids, params, seq_id=seq_id, vision=vision, cache_key=cache_key)
            elif msg[0] == "cancel":
                seq = seqs.get(msg[1])
                if seq is not None:
                    engine.cancel(seq)
            else:
                break
    except (EOFError, OSError):
        pass  # the HTTP process went away
    engine.stop()
    outbox.put(None)
