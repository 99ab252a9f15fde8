"""The worker's event loop: uvloop, with the TLS handshake held to the header deadline.

uvicorn opens its listener without a handshake timeout, so uvloop's default (60 s) applies, and a
connection still in its TLS handshake is not yet a connection to `EdgeHttpProtocol` (no head
deadline, not counted towards `max_connections`). A client that opens connections and never
finishes the handshake would hold descriptors for a minute each; here it gets `header_timeout_s`.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import uvloop

from gateway.serving import protocol


class EdgeLoop(uvloop.Loop):
    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        if kwargs.get("ssl") is not None and kwargs.get("ssl_handshake_timeout") is None:
            kwargs["ssl_handshake_timeout"] = protocol.current_limits().header_timeout_s
        return cast(asyncio.Server, await super().create_server(*args, **kwargs))


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvicorn's `loop` hook (`gateway.serving.loop:new_event_loop`)."""
    return EdgeLoop()
