"""What a failing or hostile backend can make the HTTP client raise, classified in one place.

Refused and reset connections, timeouts, and answers that are not HTTP (non-HTTP bytes, a bad status
line, oversized headers, a body cut short) are all upstream failures: the forwarder retries them on
another endpoint when nothing was sent to the client yet, and counts them towards outlier ejection.
aiohttp reports parse errors as `ClientResponseError` (before the headers) or `ClientPayloadError`
(in the body), and in some paths as its parser's own `HttpProcessingError`, which is no `ClientError`.
"""

from __future__ import annotations

import aiohttp
from aiohttp.http_exceptions import HttpProcessingError

UPSTREAM_ERRORS = (TimeoutError, aiohttp.ClientError, HttpProcessingError, OSError)


class AnswerTooLarge(aiohttp.ClientPayloadError):
    """A non-streamed answer over the pool's `max_response_bytes` (a protocol failure)."""

_CONNECT = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
_RESET = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, ConnectionError)


def failure_kind(exc: BaseException) -> str:
    """`connect` (never reached the backend), `timeout`, `reset` (the connection closed or broke) or
    `protocol` (the backend's bytes are not a valid HTTP answer)."""
    if isinstance(exc, _CONNECT):
        return "connect"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, _RESET):
        return "reset"
    return "protocol"
