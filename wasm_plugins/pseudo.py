"""The request's pseudo-headers as plugins see and change them (`:method`, `:path`, `:authority`,
`:scheme`). A change that can apply is applied; one that cannot fails the plugin with the reason
(`pseudo_header`), never silently dropped.

- `:path` (with its query): forwarded upstream; it re-matches no route. When its path part is the
  one the client sent, the embedder's upstream path for it is kept (the gateway sends `/v1/generate`
  to `/v1/completions`) and only the query changes. Later plugins see the new value.
- `:authority`: any visible-ASCII value without URL delimiters (a routing label such as
  `host:port-canary` included, as in Envoy); it becomes the `Host` the upstream receives (and
  `request.host`); the connection still goes to the pool's endpoint.
- `:method`, `:scheme`: fixed by the gateway (it POSTs to the pool's scheme): a change fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from wasm_plugins.raw import WasmCallError

# origin-form: starts with '/', visible ASCII only (no spaces, controls, or a fragment)
ORIGIN_FORM = re.compile(r"/[\x21-\x22\x24-\x7e]*")
# Any header value of visible ASCII, as Envoy takes (a plugin may use it as a routing label, e.g.
# `host:port-canary`), but none of the URL delimiters that would let a backend or a log read another
# host or userinfo out of it ('@', '/', '?', '#', '\\').
_AUTHORITY = re.compile(r"[\x21-\x22\x24-\x2e\x30-\x3e\x41-\x5b\x5d-\x7e]{1,255}")


def request_target(ctx: Any) -> str:
    """`:path` as plugins see it: the path with its query, as an earlier plugin may have left it."""
    target: str | None = ctx.plugin_path
    if target is None:
        target = f"{ctx.path}?{ctx.query}" if ctx.query else ctx.path
    return target


def apply_pseudo_headers(pseudo: dict[str, str], ctx: Any, headers: dict[str, str],
                         upstream_path: Callable[[str], str]) -> None:
    """Carry a plugin's pseudo-header values into the request (`headers`: its new regular headers).
    A pseudo-header the plugin removed keeps its value. Raises WasmCallError for a change that
    cannot apply."""
    method = pseudo.get(":method", ctx.method)
    if method != ctx.method:
        raise _cannot(":method", method, f"the gateway forwards {ctx.method} only")
    scheme = pseudo.get(":scheme", "http")
    if scheme != "http":
        raise _cannot(":scheme", scheme, "the upstream's scheme is its pool endpoint's")
    path = pseudo.get(":path")
    if path is not None and path != request_target(ctx):
        if not ORIGIN_FORM.fullmatch(path):
            raise _cannot(":path", path, "it must start with '/' and hold no spaces, control characters or '#'")
        ctx.plugin_path = path
        url_path, _, query = path.partition("?")
        base = upstream_path(ctx.path) if url_path == ctx.path else url_path
        ctx.upstream_path = f"{base}?{query}" if query else base
    authority = pseudo.get(":authority")
    host = ctx.headers.get("host", "")
    if authority is not None and authority != host:
        if not _AUTHORITY.fullmatch(authority):
            raise _cannot(":authority", authority, "it must be visible ASCII without '@', '/', '?', '#' or '\\'")
        ctx.upstream_host = authority
        host = authority
    if host:
        headers["host"] = host


def check_unchanged(pairs: list[tuple[str, str]] | None, original: list[tuple[str, str]], why: str) -> None:
    """Where pseudo-headers cannot change any more: fail if the plugin changed one."""
    now: dict[str, str] = {}
    for k, v in pairs or ():
        if k[:1] == ":":
            now.setdefault(k, v)
    for k, v in original:
        if k[:1] == ":" and k in now and now[k] != v:
            raise _cannot(k, now[k], why)


def _cannot(name: str, value: str, why: str) -> WasmCallError:
    return WasmCallError("pseudo_header", f"the plugin set {name} to {value[:200]!r}, which cannot apply: {why}")
