"""The pipelined connection that carries a gateway worker's script calls (see `link.py`)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import hiredis
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
    NoScriptError,
    ResponseError,
    TimeoutError as RedisTimeoutError,
)

from gateway.redis.script import Script

_NOT_YET = object()  # hiredis: no complete reply buffered yet


class Posted:
    """A call nobody waits for (`RedisLink.post`): its reply is dropped, an error reply reported with
    what was sent (to send it again with the script's source after `NOSCRIPT`). Keys and arguments are
    encoded (`wire.bulk`); the posts of one event-loop iteration to one script are merged into one."""

    __slots__ = ("script", "keys", "args")

    def __init__(self, script: Script, keys: list[bytes], args: list[bytes]) -> None:
        self.script = script
        self.keys = keys
        self.args = args

    def extend(self, keys: list[bytes], args: list[bytes]) -> None:
        self.keys.extend(keys)
        self.args.extend(args)

    def command(self, source: bool = False) -> bytes:
        """The merged call, by SHA or with the script's source."""
        return self.script.call(len(self.keys), self.keys + self.args, source)


# Who gets a reply: a caller's future, or nobody (a posted call).
Waiter = asyncio.Future[Any] | Posted


class Channel(asyncio.Protocol):
    """One connection carrying all script calls of a worker, pipelined.

    It is the protocol of the connection's transport, so replies are parsed and handed to their
    callers in the I/O callback itself (no reader task). A watchdog enforces the deadline: when the
    oldest unanswered call is `timeout_s` old, Redis is not answering (replies come in order, so
    every later call is stuck behind it): all pending calls fail and the connection is closed, so
    the next probe starts on a fresh one rather than behind a frozen socket.
    """

    def __init__(self, conn: Any, timeout_s: float, on_close: Callable[[Channel], None],
                 on_post_error: Callable[[Posted, ResponseError], None]) -> None:
        self.conn = conn
        self.timeout_s = timeout_s
        self.on_close = on_close
        self.on_post_error = on_post_error
        self.loop = asyncio.get_running_loop()
        self.reader = hiredis.Reader(notEnoughData=_NOT_YET, replyError=ResponseError)
        self.pending: deque[tuple[Waiter, float]] = deque()  # (who gets the reply, when sent)
        self.watchdog: asyncio.TimerHandle | None = None
        self.closed = False
        # redis-py connected and authenticated it; from now on its bytes are ours. The attribute is
        # private, but has been the asyncio connection's stream writer since redis-py 4.2.
        self.transport: asyncio.WriteTransport = conn._writer.transport
        self.transport.set_protocol(self)

    def send(self, data: bytes, waiters: list[Waiter]) -> None:
        self.transport.write(data)
        now = self.loop.time()
        pending = self.pending
        for waiter in waiters:
            pending.append((waiter, now))
        if self.watchdog is None:
            self.watchdog = self.loop.call_at(now + self.timeout_s, self._check)

    def data_received(self, data: bytes) -> None:
        reader, pending = self.reader, self.pending
        try:
            reader.feed(data)
            while (reply := reader.gets()) is not _NOT_YET:
                waiter = pending.popleft()[0]
                if isinstance(waiter, Posted):
                    if isinstance(reply, ResponseError):
                        self.on_post_error(waiter, reply)
                    continue
                if waiter.done():
                    continue  # its caller gave up
                if isinstance(reply, ResponseError):
                    message = str(reply)
                    waiter.set_exception(NoScriptError(message) if message.startswith("NOSCRIPT") else reply)
                else:
                    waiter.set_result(reply)
        except Exception as exc:  # noqa: BLE001 - a protocol error or an unexpected reply: the stream is lost
            self.close(RedisConnectionError(f"bad reply from redis: {exc!r}"))

    def eof_received(self) -> bool:
        self.close(RedisConnectionError("redis closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.close(RedisConnectionError(f"connection to redis lost: {exc or 'closed'}"))

    def _check(self) -> None:
        self.watchdog = None
        if not self.pending:
            return
        oldest = self.pending[0][1]
        if self.loop.time() - oldest >= self.timeout_s:
            self.close(RedisTimeoutError(f"no reply from redis within {self.timeout_s * 1000:.0f} ms"))
        else:
            self.watchdog = self.loop.call_at(oldest + self.timeout_s, self._check)

    def close(self, exc: Exception) -> None:
        if self.closed:
            return
        self.closed = True
        if self.watchdog is not None:
            self.watchdog.cancel()
        self.conn._close()  # closes the transport; redis-py's own (sync) way to drop a connection
        while self.pending:
            fail(self.pending.popleft()[0], exc)
        self.on_close(self)


def fail(waiter: Waiter, exc: Exception) -> None:
    """A call that will get no reply: its caller (if it still waits) gets `exc`; a posted call is lost."""
    if not isinstance(waiter, Posted) and not waiter.done():
        waiter.set_exception(exc)
