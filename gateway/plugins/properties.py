"""The gateway's plugin properties, `edgegw.*`: the request state plugins read (route, model, pool,
identity, claims, scopes, ...) and the part they may set: `edgegw.pool` (routing plugins choose the
backend pool), `edgegw.subject`, `edgegw.tenant`, `edgegw.tier`, `edgegw.api_key` (auth plugins set
the caller's identity)."""

from __future__ import annotations

from typing import Any

import orjson

NAMESPACE = "edgegw"
# property name -> the RequestContext field a plugin's value goes to
WRITABLE = {"pool": "pool_override", "subject": "subject", "tenant": "tenant", "tier": "tier", "api_key": "api_key"}


def set_edgegw(rest: list[str], value: bytes, ctx: Any) -> None:
    attr = WRITABLE.get(rest[0]) if len(rest) == 1 else None
    if attr is not None:
        setattr(ctx, attr, value.decode("utf-8", "replace") or None)


def get_edgegw(rest: list[str], ctx: Any) -> bytes | None:
    if not rest:
        return None
    name = rest[0]
    if name == "claims":
        claims = ctx.claims or {}
        if len(rest) == 1:
            return orjson.dumps(claims)
        value = claims.get(rest[1])
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else orjson.dumps(value)
    if name == "pool":
        pool = ctx.pool_override or (ctx.pool.name if ctx.pool is not None else None)
        return pool.encode() if pool else None
    if name == "route":
        return ctx.route.name.encode() if ctx.route else None
    if name == "scopes":
        return " ".join(sorted(ctx.scopes)).encode()
    if name in ("model", "subject", "tenant", "tier", "api_key", "request_id", "client_ip"):
        value = getattr(ctx, name)
        return value.encode() if value else None
    if name == "stream":
        return b"true" if ctx.stream else b"false"
    return None
