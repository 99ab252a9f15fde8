"""What the keys of `redis`: the shared store of limits and cache mean: their rows of docs/configuration.md
(the types, defaults and ranges come from the parser's own reads, `gateway.docgen`)."""

from __future__ import annotations

from gateway.config.part import KeyDocs

_DESCRIPTIONS: dict[str, str] = {
    "redis": "Redis connection for rate limits and the cache; absent: both run in process memory "
             "(exact within one process), see `docs/ratelimit-cache.md`",
    "redis.url": "`redis://[:password@]host:port/db`, `rediss://` for TLS (redis-py URL options apply), "
                 "or `unix:///path`",
    "redis.timeout_ms": "deadline of every Redis call; a dead or frozen Redis never holds a request longer",
    "redis.key_prefix": "prefix of every key (no braces: they are hash tags)",
    "redis.cluster": "use the redis-py Redis Cluster client; `url` names any node",
    "redis.max_connections": "connection pool size per gateway worker",
    "redis.retry_interval_s": "while degraded, how often a request may probe Redis again",
}

_DEFAULTS: dict[str, str] = {
    "redis": "in memory",
}

_ALLOWED: dict[str, str] = {
    "redis.url": "`redis://`, `rediss://`, `unix://`",
}

_NOTES: dict[str, str] = {
    "redis": "Degraded mode and recovery: `docs/ratelimit-cache.md` and `docs/operations.md`.",
}

DOCS = KeyDocs(
    descriptions=_DESCRIPTIONS,
    defaults=_DEFAULTS,
    allowed=_ALLOWED,
    notes=_NOTES,
    tables=("redis",),
)
