"""The compiled helpers (`_otlp.c`, `_otlp_stages.c`): see `otlp_wire.encode_spans`, `tracing.python_stage_spans`
and `propagation.traceparent`."""

from collections.abc import Sequence
from typing import Any

from gateway.telemetry.otlp_wire import Span

def encode_spans(trace_id: int, root: Span, children: Sequence[Span], remote_parent: bool, /) -> bytes | None: ...
def traceparent(trace_id: int, span_id: int, sampled: bool, /) -> str: ...
def stage_spans(spans: list[Span], server_id: int, stages: Sequence[Any], marks: list[int], failed: str | None,
                now: int, /) -> None: ...
