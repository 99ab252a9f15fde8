"""What the application embedding the plugin host provides (as mosn's proxy-wasm host takes an
ImportsHandler): a view of the request a plugin runs on, the application's own properties, and how
a plugin's local answer and its failure reach the client. The host imports nothing of its embedder; the gateway's implementation is
gateway/plugins/embedder.py.

The metrics sink is the shared registry (`edgecore.metrics`), which the embedder exports; the
upstream caller for `proxy_http_call` is the host's own (`wasm_plugins.services`), limited to the
upstreams each plugin's configuration names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from wasm_plugins.state import StreamState

if TYPE_CHECKING:
    from wasm_plugins.plugin import Plugin
    from wasm_plugins.version import PluginVersion


class RequestView(Protocol):
    """The request (and, in the response phase, its response) as plugins read and change it.
    Header names are lower-case; `plugin_path` and `plugin_judged` are the host's own per-request state
    (`:path` as a plugin left it; the canary outcomes waiting for the final status)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    body_json: dict[str, Any] | None
    body_dirty: bool
    model: str | None
    stream: bool
    client_ip: str
    request_id: str
    route: Any  # None, or the matched route: `name`, and `plugins` (bindings: name, phase, config)
    upstream_path: str | None
    upstream_host: str | None
    status: int
    response_headers: dict[str, str]
    response_body: bytes | None
    plugin_path: str | None
    plugin_judged: list[tuple[Plugin, PluginVersion, str]] | None

    def set_body_json(self, data: dict[str, Any]) -> None: ...


class Embedder(Protocol):
    """The application's side of the host."""

    namespace: str  # the first segment of the application's own property paths (the gateway's: edgegw)

    def get_property(self, rest: list[str], ctx: Any) -> bytes | None:
        """The value of the property `namespace.rest...` of the request, or None (NOT_FOUND)."""
        ...

    def set_property(self, rest: list[str], value: bytes, ctx: Any) -> None:
        """A plugin set `namespace.rest...`: apply it to the request where it means something (the
        host keeps the value for reads back either way)."""
        ...

    def upstream_path(self, path: str) -> str:
        """Where a request for `path` goes upstream when a plugin changed only its query."""
        ...

    def local_reply(self, plugin: str, st: StreamState, phase: str) -> Any:
        """What the client gets when `plugin` ended the stream (a local response or a reset); may raise."""
        ...

    def failure(self, plugin: str, reason: str, unavailable: bool) -> Exception:
        """The exception to raise when `plugin` failed under fail_closed (`unavailable`: not loaded)."""
        ...
