"""What the client receives for one request: built by the forwarder, by a stage that answers itself
(a cache hit, a plugin's local response) or from a `GatewayError`, and sent by the proxy."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson

from gateway.errors import GatewayError


@dataclass(slots=True)
class Reply:
    """A full body or a stream of SSE bytes, with the headers to send besides the proxy's own.

    Header names are lower-case; `content-type` applies to a full body only (a stream is always SSE)
    and the proxy sets `content-length` itself. The pipeline and the proxy change `headers` as they
    send it: build a new Reply per request.
    """

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    stream: AsyncIterator[bytes] | None = None

    @classmethod
    def from_error(cls, exc: GatewayError) -> Reply:
        """The OpenAI-style JSON error a client sees for `exc`."""
        headers = dict(exc.headers)
        headers["content-type"] = "application/json"
        return cls(exc.status, headers, body=orjson.dumps(exc.body()))
