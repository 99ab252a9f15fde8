"""Lua scripts, run by SHA: loaded at start-up, and sent with their source again after `NOSCRIPT`."""

from __future__ import annotations

import hashlib

from gateway.redis import wire


class Script:
    """A Lua script called with `EVALSHA`; `eval` is the head that sends its source instead (Redis
    restarted or failed over and lost its script cache: `EVAL` caches it again in the same round trip)."""

    __slots__ = ("name", "source", "sha", "evalsha", "eval")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self.evalsha = wire.script_head("EVALSHA", self.sha)  # a call's first two arguments, encoded once
        self.eval = wire.script_head("EVAL", source)

    def call(self, nkeys: int, parts: list[bytes], source: bool = False) -> bytes:
        """The call with these encoded keys and arguments (`wire.script_call`); by SHA, or with the
        source (`source`)."""
        return wire.script_call(self.eval if source else self.evalsha, nkeys, parts)

    def __repr__(self) -> str:
        return f"Script({self.name!r})"
