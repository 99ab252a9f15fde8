"""W3C trace context for a request that is traced but not sampled: the backend still joins its trace
(with the sampled flag off), and a client's own `traceparent` never reaches it unchecked.

Kept free of OpenTelemetry imports: the upstream forwarder imports it on every configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.context import RequestContext


def propagate_unsampled(ctx: RequestContext, headers: dict[str, str]) -> None:
    """Replace the client's trace headers with the request's own (unsampled) trace context."""
    headers.pop("traceparent", None)
    headers.pop("tracestate", None)
    if ctx.trace_context is not None:  # (trace id, span id), not sampled
        trace_id, span_id = ctx.trace_context
        headers["traceparent"] = f"00-{trace_id:032x}-{span_id:016x}-00"
