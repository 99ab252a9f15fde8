"""What the link sends in one event-loop iteration: awaited calls in order, posted calls merged.

Calls made in the same iteration leave in one write at its end. Posted calls (writes nobody waits
for, `RedisLink.post`) to the same script are merged into one call whose keys and arguments are the
concatenation of theirs, so a script that is posted to must read its keys and arguments as such a
list (as SETTLE does).
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.redis.channel import Channel, Posted, Waiter, fail
from gateway.redis.script import Script


class Outbox:
    """Calls queued for the end of this event-loop iteration, for `channel` (None: no connection)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.channel: Channel | None = None
        self._commands: list[bytes] = []
        self._waiters: list[Waiter] = []
        self._posts: dict[str, Posted] = {}  # by script SHA

    def call(self, command: bytes) -> asyncio.Future[Any]:
        """Send `command` (encoded) at the end of this iteration; the future gets its reply."""
        future: asyncio.Future[Any] = self.loop.create_future()
        self.queue(command, future)
        return future

    def queue(self, command: bytes, waiter: Waiter) -> None:
        if not self._commands and not self._posts:
            self.loop.call_soon(self.flush)
        self._commands.append(command)
        self._waiters.append(waiter)

    def post(self, script: Script, keys: list[bytes], args: list[bytes]) -> None:
        """A call nobody waits for (encoded keys and arguments), merged with this iteration's other posts to `script`."""
        merged = self._posts.get(script.sha)
        if merged is not None:
            merged.extend(keys, args)
            return
        if not self._commands and not self._posts:
            self.loop.call_soon(self.flush)
        self._posts[script.sha] = Posted(script, list(keys), list(args))

    def flush(self) -> None:
        commands, waiters = self._commands, self._waiters
        self._commands, self._waiters = [], []
        if self._posts:
            for post in self._posts.values():
                commands.append(post.command())
                waiters.append(post)
            self._posts = {}
        if self.channel is None:  # lost since these calls were queued
            error = RedisConnectionError("connection to redis lost")
            for waiter in waiters:
                fail(waiter, error)
            return
        self.channel.send(b"".join(commands), waiters)
