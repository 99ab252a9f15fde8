"""One structured JSON line per request. Never logs tokens, keys, bodies or headers."""

from __future__ import annotations

import sys
import time
from typing import IO

import orjson

from gateway.context import RequestContext


class AccessLog:
    def __init__(self, target: str) -> None:
        self.enabled = target != "off"
        self._out: IO[bytes] | None = None
        if target == "stdout":
            self._out = sys.stdout.buffer
        elif self.enabled:
            self._out = open(target, "ab", buffering=1 << 16)  # noqa: SIM115 - process lifetime

    def write(self, ctx: RequestContext, route: str, pool: str, elapsed_s: float) -> None:
        if not self.enabled or self._out is None:
            return
        record = {
            "ts": round(time.time(), 3),
            "request_id": ctx.request_id,
            "method": ctx.method,
            "path": ctx.path,
            "status": ctx.status,
            "route": route,
            "pool": pool,
            "endpoint": ctx.endpoint.host if ctx.endpoint else None,
            "attempts": ctx.attempts,
            "issuer": ctx.issuer,
            "subject": ctx.subject,
            "tenant": ctx.tenant,
            "model": ctx.model,
            "stream": ctx.stream,
            "client": ctx.client_ip,
            "duration_ms": round(elapsed_s * 1000, 3),
            "upstream_ms": round(ctx.upstream_s * 1000, 3),
            "overhead_ms": round(ctx.overhead_ms(), 3),
            "prompt_tokens": ctx.usage.prompt_tokens if ctx.usage else None,
            "completion_tokens": ctx.usage.completion_tokens if ctx.usage else None,
            "cache": ctx.cache_status,
            "error": ctx.error,
        }
        self._out.write(orjson.dumps(record) + b"\n")

    def flush(self) -> None:
        if self._out is not None:
            self._out.flush()
