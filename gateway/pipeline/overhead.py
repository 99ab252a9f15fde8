"""What counts as the gateway's overhead: its own time, never the time spent waiting on the upstream.

A plain response's upstream time is the exchange (`gateway.upstream.forward` adds it to
`ctx.upstream_s`). A stream's is that plus every wait for the next chunk: the tokens are generated
then. So a stream's overhead is the gateway's time before the first upstream byte plus its own work
per chunk, and `edgegw_overhead_seconds` and the access log's `overhead_ms` never grow with the
generation time.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from gateway.context import RequestContext


async def upstream_timed(ctx: RequestContext, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Yield the upstream's chunks, adding each wait for the next one to `ctx.upstream_s`."""
    source = chunks.__aiter__()
    clock = time.perf_counter
    while True:
        waited = clock()
        try:
            chunk = await source.__anext__()
        except StopAsyncIteration:
            ctx.upstream_s += clock() - waited
            return
        ctx.upstream_s += clock() - waited
        yield chunk
