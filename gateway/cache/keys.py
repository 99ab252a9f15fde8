"""Which requests the cache may answer, and the key they are stored under."""

from __future__ import annotations

import hashlib

import orjson

from gateway.cache.config import CacheRule
from gateway.context import RequestContext

# Fields that change neither the answer's content nor who may see it: the stream framing and
# per-end-user identifiers. Stream and non-stream requests share entries (the cache converts).
_IGNORED = frozenset({"stream", "stream_options", "user", "metadata", "safety_identifier", "prompt_cache_key"})
OPT_IN_HEADER = "x-edgegw-cache"


def cache_directives(ctx: RequestContext) -> tuple[bool, bool]:
    """(may read, may store) from the request's Cache-Control."""
    value = ctx.headers.get("cache-control")
    if not value:
        return True, True
    directives = {d.strip().split("=", 1)[0].lower() for d in value.split(",")}
    if "no-store" in directives:
        return False, False
    if "no-cache" in directives:
        return False, True  # revalidate: ask the backend, refresh the entry
    return True, True


def cacheable(ctx: RequestContext, rule: CacheRule) -> bool:
    """Only deterministic answers are shared, unless the policy or the request opts in."""
    if rule.when == "always":
        return True
    opted_in = ctx.headers.get(OPT_IN_HEADER, "").lower() in ("on", "1", "true")
    if rule.when == "header":
        return opted_in
    if opted_in:
        return True
    body = ctx.body_json or {}
    if ctx.path == "/v1/embeddings":
        return True
    temperature = body.get("temperature")
    return isinstance(temperature, int | float) and temperature == 0


def partner(ctx: RequestContext) -> str:
    """Whose cache this is: one partner (tenant, else subject, else API key) never sees another's.
    Within its issuer: the same `sub` from two identity providers is two callers."""
    if ctx.tenant:
        return "t:" + ctx.tenant
    if ctx.subject:
        return "s:" + ctx.subject
    if ctx.api_key:
        return "k:" + hashlib.sha256(ctx.api_key.encode()).hexdigest()
    return "anonymous"


def cache_key(ctx: RequestContext) -> str:
    """A hash of issuer, partner, route, path, model and the canonical body (sorted keys, ignored
    fields dropped)."""
    body = ctx.body_json or {}
    if not _IGNORED.isdisjoint(body):
        body = {k: v for k, v in body.items() if k not in _IGNORED}
    head = "\0".join((ctx.issuer or "", partner(ctx), ctx.route.name if ctx.route else "", ctx.path,
                      ctx.model or "", ""))
    return hashlib.blake2b(head.encode() + orjson.dumps(body, option=orjson.OPT_SORT_KEYS),
                           digest_size=20).hexdigest()
