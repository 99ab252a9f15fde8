"""What the client sees when a plugin answers locally, resets the request, or fails."""

from __future__ import annotations

from typing import Any

import orjson

from gateway.errors import GatewayError
from gateway.reply import Reply
from wasm_plugins.state import StreamState


class PluginReply(GatewayError):
    """A local response from a response-phase plugin: the pipeline renders GatewayErrors, so the
    plugin's body travels as the error body (JSON bodies verbatim)."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str], plugin: str) -> None:
        super().__init__(status, body.decode("utf-8", "replace") or f"answered by plugin {plugin!r}",
                         "plugin_response", headers=headers)
        self.raw = body

    def body(self) -> Any:
        try:
            return orjson.loads(self.raw)
        except orjson.JSONDecodeError:
            return super().body()


def local_reply(plugin: str, st: StreamState, phase: str) -> Reply | None:
    """The response for a stream the plugin ended, or None when it let the request continue."""
    if st.reset:
        raise GatewayError(502, f"plugin {plugin!r} reset the request", "plugin_reset")
    local = st.local_response
    if local is None:
        return None
    headers = {k: v for k, v in local.headers if not k.startswith(":")}
    headers.setdefault("x-edgegw-plugin", plugin)
    if phase == "response":
        raise PluginReply(local.status, local.body, headers, plugin)
    media = headers.pop("content-type", None)
    if media is None:
        media = "application/json" if local.body[:1] in (b"{", b"[") else "text/plain; charset=utf-8"
    elif media.startswith("text/") and "charset=" not in media.lower():
        media += "; charset=utf-8"  # a browser would otherwise guess the encoding of the plugin's text
    # Header names as HTTP/1.1 sends them (lower-case); the proxy sets the length.
    out = {k.lower(): v for k, v in headers.items() if k.lower() != "content-length"}
    out.setdefault("content-type", media)
    return Reply(local.status, out, body=local.body)


def failure_error(plugin: str, reason: str, unavailable: bool) -> GatewayError:
    """fail_closed: a clean JSON 5xx naming the plugin and the reason, never the plugin's internals."""
    if unavailable:
        return GatewayError(503, f"plugin {plugin!r} is unavailable ({reason})", "plugin_unavailable",
                            headers={"retry-after": "1"})
    return GatewayError(500, f"plugin {plugin!r} failed ({reason})", "plugin_failed")
