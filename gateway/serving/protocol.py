"""uvicorn's httptools protocol with the limits an edge listener needs.

Stock uvicorn lets a client take forever to send its request head (an idle or half-sent connection
holds a file descriptor indefinitely), buffers a head of any size, accepts connections until the
process runs out of descriptors and answers parse errors in plain text. `EdgeHttpProtocol` adds,
per connection:

- a head deadline: the request line and headers must arrive within `header_timeout_s` of the
  connection opening (first request) or of their first byte (later requests), else 408 and close
  (a connection that sent nothing is just closed);
- a body deadline: a request body must arrive within `body_timeout_s` of its head, else 408 (when
  no response has started) and close;
- `max_header_bytes` (counted on the raw bytes while the head is incomplete, so an unfinished
  head cannot grow memory) and `max_headers`: 431 and close;
- `max_connections` open connections per worker: the next one is answered 503 and closed at
  once, so descriptors are never exhausted;
- OpenAI-style JSON for every error the listener itself sends (bad request line, unknown method).

Timers are only armed when a head or body spans several reads, so a request that arrives in one
read costs two counters and no timer. Idle keep-alive connections are closed by uvicorn's own
`timeout_keep_alive` (`server.keepalive_timeout_s`).
"""

from __future__ import annotations

import asyncio
import http
import logging
import time
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.config.schema import ServerConfig
from gateway.errors import GatewayError
from gateway.serving.metrics import refusals_total

log = logging.getLogger("edgegw.serving")
_LOG_EVERY_S = 10.0
_last_limit_log = [0.0]


@dataclass(frozen=True)
class ListenerLimits:
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_header_bytes: int = 32768
    max_headers: int = 100
    max_connections: int = 4096

    @classmethod
    def of(cls, server: ServerConfig) -> ListenerLimits:
        return cls(server.header_timeout_s, server.body_timeout_s, server.max_header_bytes,
                   server.max_headers, server.max_connections)


_limits = ListenerLimits()


def configure(limits: ListenerLimits) -> None:
    """Set the limits of every connection this worker accepts from now on (called once at start-up)."""
    global _limits
    _limits = limits


def current_limits() -> ListenerLimits:
    return _limits


def error_response(status: int, message: str, code: str) -> bytes:
    """A complete HTTP/1.1 response with an OpenAI-style JSON error body that closes the connection."""
    err = GatewayError(status, message, code, type="invalid_request_error" if status in (400, 431) else None)
    body = orjson.dumps(err.body())
    head = (f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    return head.encode("ascii") + body


_HEAD_TIMEOUT = error_response(408, "request headers not received in time", "header_timeout")
_BODY_TIMEOUT = error_response(408, "request body not received in time", "body_timeout")
_HEAD_TOO_LARGE = error_response(431, "request headers too large", "header_too_large")
_TOO_MANY_HEADERS = error_response(431, "too many request headers", "too_many_headers")
_BUSY = error_response(503, "too many open connections, retry later", "connection_limit")
_REASONS = {_HEAD_TIMEOUT: "header_timeout", _BODY_TIMEOUT: "body_timeout", _HEAD_TOO_LARGE: "header_too_large",
            _TOO_MANY_HEADERS: "too_many_headers", _BUSY: "connection_limit"}


class _Refuse(Exception):
    """Raised inside a parser callback to stop parsing; the response to send is on the protocol."""


class EdgeHttpProtocol(HttpToolsProtocol):
    """One client connection: uvicorn's HTTP/1.1 handling plus the edge limits (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # uvicorn passes its own arguments through
        super().__init__(*args, **kwargs)
        self.limits = _limits
        self._awaiting_head = True  # the next bytes belong to a request head
        self._in_body = False  # a head was parsed and its body is not complete yet
        self._raw_head_bytes = 0  # bytes read since the head began (upper bound while incomplete)
        self._head_bytes = 0  # bytes of the parsed header names and values
        self._refusal = b""
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._refused = False

    # Connection lifetime

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            # Accept-and-close keeps the descriptor count bounded; the client gets a clear answer.
            self._refused = True
            self.transport = transport
            transport.write(_BUSY)
            transport.close()
            refusals_total.labels("connection_limit").inc()
            now = time.monotonic()
            if now - _last_limit_log[0] >= _LOG_EVERY_S:  # once per period, not once per connection
                _last_limit_log[0] = now
                log.warning("server.max_connections (%d) reached: refusing new connections with 503",
                            self.limits.max_connections)
            return
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._refused:
            return
        super().connection_lost(exc)

    def shutdown(self) -> None:
        if self._refused:
            return
        super().shutdown()

    def _cancel_timers(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    # Reading

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._awaiting_head:
            self._raw_head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Websockets and h2c are off: the request is served as plain HTTP/1.1. The parser reads
            # nothing after an upgrade request, so the connection closes after its response (uvicorn
            # would log two warnings per such request and leave the connection hanging).
            if self.cycle is not None:
                self.cycle.keep_alive = False
            return
        except httptools.HttpParserError as exc:
            if self._refusal:
                self._send_and_close(self._refusal)
            else:
                message = "invalid HTTP method" if isinstance(exc, httptools.HttpParserInvalidMethodError) \
                    else "malformed HTTP request"
                self._send_and_close(error_response(400, message, "bad_request"), "bad_request")
            return
        if self._awaiting_head and self._raw_head_bytes:
            if self._raw_head_bytes > self.limits.max_header_bytes:
                self._send_and_close(_HEAD_TOO_LARGE)
            elif self._head_timer is None:
                self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timeout)
        elif self._in_body and self._body_timer is None and not self.transport.is_closing():
            self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_timeout)

    # The parser callbacks below run for every request (on_header for every header): they inline
    # uvicorn's bodies rather than calling them, to keep a call off the per-header path.

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_bytes += len(name) + len(value)
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        # Checked once the head is parsed; an unfinished head is bounded by the raw-byte count in
        # data_received, so at most one read's worth of headers is ever parsed beyond the limits.
        count = len(self.headers)
        if count > self.limits.max_headers:
            self._refusal = _TOO_MANY_HEADERS
            raise _Refuse
        if self._head_bytes + 4 * count + len(self.url) > self.limits.max_header_bytes:
            self._refusal = _HEAD_TOO_LARGE
            raise _Refuse
        self._awaiting_head = False
        self._in_body = True
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._awaiting_head = True
        self._raw_head_bytes = self._head_bytes = 0
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        cycle = self.cycle
        if cycle.response_complete or (self.parser.should_upgrade() and self._should_upgrade()):
            return
        cycle.more_body = False
        cycle.message_event.set()

    # Deadlines

    def _head_timeout(self) -> None:
        self._head_timer = None
        if not self._awaiting_head or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head behind a response still being sent: the response's own deadlines apply.
            self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timeout)
            return
        if self._raw_head_bytes:
            self._send_and_close(_HEAD_TIMEOUT)
        else:
            self.transport.close()  # never sent anything: nothing to answer
            refusals_total.labels("idle").inc()

    def _body_timeout(self) -> None:
        self._body_timer = None
        if not self._in_body or self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            # The app sees a disconnect and sends nothing more; the client sees a 408.
            cycle.disconnected = True
            cycle.message_event.set()
            self._send_and_close(_BODY_TIMEOUT)
        else:
            self.transport.close()
            refusals_total.labels("body_timeout").inc()

    def _send_and_close(self, response: bytes, reason: str | None = None) -> None:
        refusals_total.labels(reason or _REASONS.get(response, "other")).inc()
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True
            cycle.message_event.set()
            if cycle.response_started:
                response = b""  # mid-response: another status line would corrupt it
        if not self.transport.is_closing():
            if response:
                self.transport.write(response)
            self.transport.close()
