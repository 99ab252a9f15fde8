"""The compiled helpers (`_otlp.c`): see `otlp_wire.encode_spans` and `propagation.traceparent`."""

from collections.abc import Sequence

from gateway.telemetry.otlp_wire import Span

def encode_spans(trace_id: int, root: Span, children: Sequence[Span], remote_parent: bool, /) -> bytes | None: ...
def traceparent(trace_id: int, span_id: int, sampled: bool, /) -> str: ...
