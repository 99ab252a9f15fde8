"""The telemetry of one policy version: its two hooks on the request path (`begin`, `end`), the
tracer, the GenAI metrics and the usage recorder. Built by `gateway.policy.parts` only when the
policy has a `telemetry:` section; without one the proxy calls nothing here."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from edgecore.metrics import flush
from gateway.context import Answer
from gateway.feature import StateKey
from gateway.telemetry import metrics as tm
from gateway.telemetry.config import TelemetryConfig
from gateway.telemetry.usage import UsageRecorder
from gateway.telemetry.usage_store import UsageStore

if TYPE_CHECKING:
    from gateway.context import RequestContext
    from gateway.telemetry.tracing import Tracing


TELEMETRY_KEY: StateKey[Telemetry] = StateKey("telemetry")  # the feature's long-lived object


class Telemetry:
    """A `gateway.context.RequestObserver`: its hooks run on every inference request."""

    def __init__(self, config: TelemetryConfig, redis_config: Any = None) -> None:
        self.config = config
        self.tracing: Tracing | None = None
        if config.export is not None:
            from gateway.telemetry.tracing import Tracing

            self.tracing = Tracing(config)
        self.usage = UsageRecorder(config.usage) if config.usage is not None else None
        self.store = UsageStore(self.usage, redis_config) if self.usage is not None else None

    async def start(self) -> None:
        if self.store is not None:
            await self.store.start()

    async def stop(self) -> None:
        if self.store is not None:
            await self.store.stop()
        flush()  # the batched usage counts reach their Prometheus series before this recorder goes
        if self.tracing is not None:
            await self.tracing.stop()

    def begin(self, ctx: RequestContext) -> None:
        """As the request arrives: its server span (when traced)."""
        if self.tracing is not None:
            ctx.trace = self.tracing.begin(ctx)
        ctx.answer = Answer(ctx.trace is not None)  # an untraced one's metrics need only its timing

    def end(self, ctx: RequestContext) -> None:
        """After the last byte: end its spans, observe the GenAI metrics, count the partner's usage."""
        if ctx.trace is not None:
            ctx.trace.finish(ctx)
        if ctx.pool is not None:
            _observe_genai(ctx)
        if self.usage is not None and ctx.route is not None and (ctx.issuer is not None or ctx.route.auth == "none"):
            self.usage.record(ctx)


def _observe_genai(ctx: RequestContext) -> None:
    usage, answer = ctx.usage, ctx.answer
    first = answer.first_chunk_s if answer is not None and ctx.status == 200 else None
    tm.genai_series(ctx.path, ctx.model or "none").observe(
        time.perf_counter() - ctx.started, usage.prompt_tokens if usage is not None else None,
        usage.completion_tokens if usage is not None else 0, first)
