"""Everything one backend process serves, loaded in the background so /healthz can say 503 meanwhile."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpu_backend.images import ImageLimits
from gpu_backend.metrics import BackendMetrics

log = logging.getLogger("edgegw.backend")


@dataclass
class BackendOptions:
    """Parsed `edgegw backend` options for one process."""

    model: str
    served_model_name: str | None = None
    embedding_model: str | None = None
    embedding_served_model_name: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    max_batch_size: int = 32
    max_queue: int = 256
    max_model_len: int | None = None
    prefill_tokens: int = 2048
    max_waiting_steps: int = 4
    default_max_tokens: int = 16  # /v1/completions without max_tokens, as OpenAI's legacy API
    threads: int | None = None
    drain_timeout_s: float = 30.0
    prefix_cache_mb: float = 1024.0  # memory for the prefix cache's blocks; 0 turns it off
    engine: str = "process"  # "process": the model runs in a child process (remote.py); "thread": in this one
    images: ImageLimits = field(default_factory=ImageLimits)  # image-text-to-text models only
    mm_processor_kwargs: dict[str, int] = field(default_factory=dict)  # vLLM's flag: max_pixels, min_pixels

    @property
    def prefix_cache_bytes(self) -> int:
        return int(self.prefix_cache_mb * 2**20)


@dataclass
class BackendState:
    """Shared by the HTTP handlers; `status` moves loading -> ready -> draining (or failed)."""

    options: BackendOptions
    status: str = "loading"
    error: str | None = None
    model_name: str = ""
    embedding_name: str | None = None
    engine: Any = None
    embedder: Any = None
    tokenizer: Any = None
    processor: Any = None  # set for an image-text-to-text model: it takes image parts
    context_len: int = 0
    device: str = ""
    inflight: int = 0
    started: float = field(default_factory=time.time)
    metrics: BackendMetrics = field(default_factory=lambda: BackendMetrics("model"))
    telemetry: Any = None  # gpu_backend.telemetry.BackendTelemetry (made on first use)
    on_failed: Callable[[], None] | None = None  # the server exits: a supervisor should see the failure

    @property
    def served(self) -> list[str]:
        return [self.model_name] + ([self.embedding_name] if self.embedding_name else [])

    async def load(self) -> None:
        """Load models off the event loop, start the engine, warm up, then report ready."""
        try:
            await asyncio.to_thread(self._load_sync)
            self.engine.start(asyncio.get_running_loop())
            await self._warm_up()
            self.status = "ready"
            log.info("backend ready: %s on %s (context %d, max batch %d)", self.model_name, self.device,
                        self.context_len, self.options.max_batch_size)
        except Exception as exc:
            log.exception("backend failed to load")
            self.status, self.error = "failed", f"{type(exc).__name__}: {exc}"
            if self.on_failed is not None:
                self.on_failed()

    def _load_sync(self) -> None:
        from gpu_backend.device import configure_threads, resolve_device, resolve_dtype
        from gpu_backend.engine import Engine
        from gpu_backend.models import load_causal_lm, resolve_embedding_model, resolve_model
        from gpu_backend.vlm import apply_processor_kwargs, is_vision_model, load_processor, load_vision_model

        opts = self.options
        device = resolve_device(opts.device)
        # With the engine in its own process, this one only embeds (and tokenizes): one torch thread keeps
        # it from stalling the engine's OpenMP workers on a CPU (see gpu_backend.device).
        configure_threads(1 if opts.engine == "process" and device.type == "cpu" else opts.threads)
        dtype = resolve_dtype(opts.dtype, device)
        self.device = f"{device} ({str(dtype).removeprefix('torch.')})"
        model_dir, default_name = resolve_model(opts.model)
        self.model_name = opts.served_model_name or default_name
        self.metrics = BackendMetrics(self.model_name)
        vision = is_vision_model(Path(model_dir))
        if vision:
            self.processor = load_processor(Path(model_dir))
            apply_processor_kwargs(self.processor, opts.mm_processor_kwargs)
        if opts.engine == "process":
            self._launch_engine_process(Path(model_dir), vision)
        else:
            load = load_vision_model if vision else load_causal_lm
            model, self.tokenizer = load(Path(model_dir), device, dtype)
            self.context_len = self._context(model.config)
            self.engine = Engine(model, self.tokenizer, context_len=self.context_len,
                                 max_batch_size=opts.max_batch_size, max_queue=opts.max_queue,
                                 prefill_tokens=opts.prefill_tokens, max_waiting_steps=opts.max_waiting_steps,
                                 prefix_cache_bytes=opts.prefix_cache_bytes, metrics=self.metrics, vision=vision)
        if opts.embedding_model:
            from gpu_backend.embeddings import Embedder

            emb_dir, emb_name = resolve_embedding_model(opts.embedding_model)
            self.embedding_name = opts.embedding_served_model_name or emb_name
            self.embedder = Embedder(emb_dir, device, dtype)

    def _context(self, config: Any) -> int:
        ctx = int(getattr(config.get_text_config(), "max_position_embeddings", 2048) or 2048)
        return min(ctx, self.options.max_model_len) if self.options.max_model_len else ctx

    def _launch_engine_process(self, model_dir: Path, vision: bool) -> None:
        from transformers import AutoConfig, AutoTokenizer

        from gpu_backend.remote import EngineSpec, RemoteEngine

        opts = self.options
        if self.processor is not None:
            self.tokenizer = self.processor.tokenizer
        else:
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.context_len = self._context(AutoConfig.from_pretrained(model_dir, local_files_only=True))
        spec = EngineSpec(str(model_dir), opts.device, opts.dtype, opts.threads, self.context_len,
                          opts.max_batch_size, opts.prefill_tokens, opts.max_waiting_steps, vision,
                          prefix_cache_bytes=opts.prefix_cache_bytes)
        self.engine = RemoteEngine(spec, self.metrics, opts.max_queue)
        self.engine.on_exit = self._engine_died
        self.device = self.engine.launch()["device"]

    def _engine_died(self) -> None:
        if self.status in ("loading", "ready"):
            log.error("the engine process exited")
            self.status, self.error = "failed", "the engine process exited"
            if self.on_failed is not None:
                self.on_failed()

    async def _warm_up(self) -> None:
        """One short generation (and one embedding) so the first real request pays no one-time costs."""
        from gpu_backend.sequence import SamplingParams

        ids = self.tokenizer("warm up", add_special_tokens=False)["input_ids"] or [0]
        seq = self.engine.submit(ids, SamplingParams(max_tokens=2, temperature=0.0))
        while (await seq.events.get()).finish_reason is None:
            pass
        if self.embedder is not None:
            await asyncio.to_thread(self.embedder.embed, ["warm up"])

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.stop()
        if self.telemetry is not None:
            self.telemetry.stop()
