"""Properties (`proxy_get_property` / `proxy_set_property`): Envoy attribute names plus the embedder's
own namespace (`Embedder.namespace`: the gateway's is `edgegw.*`, gateway/plugins/properties.py).

Paths arrive as NUL-separated segments (Rust, Go, C++ SDKs) or dotted (some AssemblyScript users);
both work. Values follow Envoy's encoding: strings as bytes, integers as 8-byte little-endian,
maps in the header-map pairs serialization.

A property a plugin sets in the embedder's namespace goes to the embedder (which may apply it to
the request); anything a plugin sets is kept for the rest of that context and reads back (Envoy's
filter state).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any

from wasm_plugins.abi import serialize_map
from wasm_plugins.embedder import Embedder
from wasm_plugins.pseudo import request_target
from wasm_plugins.state import StreamState


def _i64(v: int) -> bytes:
    return struct.pack("<q", v)


def split_path(raw: bytes) -> list[str]:
    text = raw.decode("utf-8", "replace").rstrip("\0")
    if "\0" in text:
        return text.split("\0")
    parts = text.split(".")
    # request.headers.<name> and edgegw.claims.<name>: the rest may itself contain dots.
    if len(parts) > 3 and parts[0] in ("request", "response", "edgegw"):
        return [parts[0], parts[1], ".".join(parts[2:])]
    return parts


_PATHS: dict[bytes, tuple[list[str], str]] = {}


def parse_path(raw: bytes) -> tuple[list[str], str]:
    """A path's segments and its dotted key, remembered: a plugin asks for the same few names on
    every request. The lists are shared: callers must not change them."""
    hit = _PATHS.get(raw)
    if hit is None:
        if len(_PATHS) >= 1024:  # names built per request (a header's value in a path...): stay bounded
            _PATHS.clear()
        path = split_path(raw)
        hit = _PATHS[raw] = (path, ".".join(path))
    return hit


def get_property(path: list[str], st: StreamState | None, plugin: dict[str, str],
                 key: str | None = None, embedder: Embedder | None = None) -> bytes | None:
    """The value of `path` (`key`: it dotted, when the caller has it), or None when there is no such
    property (the plugin sees NOT_FOUND)."""
    if key is None:
        key = ".".join(path)
    if key in plugin:
        return plugin[key].encode()
    if st is None or st.ctx is None:
        return None
    if key in st.properties:
        return st.properties[key]
    ctx = st.ctx
    head = path[0]
    if head == "request":
        return _request(path[1:], st, ctx)
    if head == "response":
        return _response(path[1:], ctx)
    if head == "source" and len(path) == 2:
        return {"address": ctx.client_ip.encode(), "port": _i64(0)}.get(path[1])
    if embedder is not None and head == embedder.namespace:
        return embedder.get_property(path[1:], ctx)
    if key in ("route_name", "xds.route_name"):
        return ctx.route.name.encode() if ctx.route else None
    return None


def set_property(path: list[str], value: bytes, st: StreamState | None, key: str | None = None,
                 embedder: Embedder | None = None) -> None:
    if key is None:
        key = ".".join(path)
    if st is None or st.ctx is None:
        return
    if embedder is not None and path and path[0] == embedder.namespace:
        embedder.set_property(path[1:], value, st.ctx)
    st.properties[key] = value


# Envoy's vocabulary: `path` is the whole request target (with the query), `url_path` without it,
# `query` the part after '?' (empty when there is none).
_REQUEST_STRINGS: dict[str, Callable[[Any], str | None]] = {
    "path": request_target, "url_path": lambda ctx: request_target(ctx).partition("?")[0],
    "query": lambda ctx: request_target(ctx).partition("?")[2], "method": lambda ctx: ctx.method,
    "id": lambda ctx: ctx.request_id, "host": lambda ctx: ctx.headers.get("host"),
    "scheme": lambda ctx: "http", "protocol": lambda ctx: "HTTP/1.1",
    "useragent": lambda ctx: ctx.headers.get("user-agent"), "referer": lambda ctx: ctx.headers.get("referer"),
}


def _request(rest: list[str], st: StreamState, ctx: Any) -> bytes | None:
    if not rest:
        return None
    name = rest[0]
    if name == "headers":
        headers = st.request_headers or []
        if len(rest) == 1:
            return serialize_map([(k, v) for k, v in headers if not k.startswith(":")])
        wanted = rest[1].lower()
        return next((v.encode("latin-1") for k, v in headers if k == wanted), None)
    getter = _REQUEST_STRINGS.get(name)
    if getter is not None:  # only the asked-for value is computed
        value = getter(ctx)
        return value.encode("latin-1") if value is not None else None
    if name in ("size", "total_size"):
        return _i64(len(st.request_body if st.request_body is not None else ctx.body))
    if name == "time":
        return _i64(time.time_ns())
    return None


def _response(rest: list[str], ctx: Any) -> bytes | None:
    if rest == ["code"]:
        return _i64(ctx.status) if ctx.status else None
    if rest == ["size"] and ctx.response_body is not None:
        return _i64(len(ctx.response_body))
    return None
