"""W3C trace context: the `traceparent` value the gateway sends to backends, and for a request that is
traced but not sampled, its own context in place of the client's (the backend still joins the trace,
with the sampled flag off, and a client's `traceparent` never reaches it unchecked).

Kept free of OpenTelemetry imports: the upstream forwarder imports it on every configuration."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.context import RequestContext


def _traceparent(trace_id: int, span_id: int, sampled: bool) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{'01' if sampled else '00'}"


traceparent: Callable[[int, int, bool], str] = _traceparent
"""`traceparent(trace_id, span_id, sampled)`: the header's value, `00-{trace id}-{span id}-{flags}` in hex
(compiled where `gateway.telemetry._otlp` is built: formatting the ints in Python costs more than the
rest of an unsampled request's tracing)."""
try:
    from gateway.telemetry._otlp import traceparent
except ImportError:  # built without a C compiler
    pass


def propagate_unsampled(ctx: RequestContext, headers: dict[str, str]) -> None:
    """Replace the client's trace headers with the request's own (unsampled) trace context."""
    headers.pop("traceparent", None)
    headers.pop("tracestate", None)
    if ctx.trace_context is not None:  # (trace id, span id), not sampled
        trace_id, span_id = ctx.trace_context
        headers["traceparent"] = traceparent(trace_id, span_id, False)
