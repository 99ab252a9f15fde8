"""Host-side state of proxy-wasm contexts: a root context per configuration, a stream context per
request phase. Host functions read and write the state of the context the plugin is running in."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class LocalResponse:
    """What `proxy_send_local_response` asked for: the request ends with this answer."""

    status: int
    body: bytes
    headers: list[tuple[str, str]]
    details: str


@dataclass(slots=True)
class CallResult:
    """An http call's answer as the plugin reads it (status 0 and no headers when it failed)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(slots=True, eq=False)
class ContextState:
    """Common to root and stream contexts."""

    id: int
    root_id: int  # own id for a root context
    pending: dict[int, asyncio.Task[CallResult]] = field(default_factory=dict)  # http calls by token

    @property
    def is_root(self) -> bool:
        return self.id == self.root_id


@dataclass(slots=True, eq=False)
class RootState(ContextState):
    config: bytes = b""
    tick_ms: int = 0
    tick_raised: bool = False  # a shorter period was asked for and raised to limits.min_tick_ms
    tick_task: asyncio.Task[None] | None = None


@dataclass(slots=True, eq=False)
class StreamState(ContextState):
    """One request (or one response) as a plugin sees it. `ctx` is the gateway's RequestContext."""

    ctx: Any = None
    plugin_name: str = ""
    request_headers: list[tuple[str, str]] | None = None
    request_body: bytes | None = None
    response_headers: list[tuple[str, str]] | None = None
    response_body: bytes | None = None
    request_headers_changed: bool = False
    request_body_changed: bool = False
    response_headers_changed: bool = False
    pseudo_changed: bool = False  # a change may have touched a pseudo-header (`:path`, `:status`...)
    local_response: LocalResponse | None = None
    continued: bool = False
    reset: bool = False
    wakeup: asyncio.Event | None = None
    properties: dict[str, bytes] = field(default_factory=dict)  # plugin-set properties (filter state)
    fuel: int = 0  # fuel used by this context's callbacks

    @property
    def ended(self) -> bool:
        return self.local_response is not None or self.reset
