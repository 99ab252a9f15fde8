"""What the keys of `routes[].cache` and `memory_cache` mean: their rows of docs/configuration.md
(the types, defaults and ranges come from the parser's own reads, `gateway.docgen`)."""

from __future__ import annotations

from gateway.config.part import KeyDocs

_DESCRIPTIONS: dict[str, str] = {
    "routes[].cache": "response caching; absent: off. See the table below",
    "routes[].cache.ttl_s": "entry lifetime",
    "routes[].cache.when": "`deterministic`: `temperature: 0` and embeddings, or opted in with "
                           "`x-edgegw-cache: on`; `header`: only opted-in requests; `always`: every request",
    "routes[].cache.max_bytes": "larger answers are not stored (checked uncompressed)",
    "routes[].cache.lock_s": "single-flight lock lease: how long the first miss may take before others go",
    "routes[].cache.wait_s": "how long identical misses wait for the first one (at most `lock_s`)",
    "memory_cache": "the in-process cache store, used when there is no `redis:` (per worker process)",
    "memory_cache.max_bytes": "total size of the stored (compressed) entries; beyond it entries are evicted",
    "memory_cache.max_entries": "number of entries; beyond it entries are evicted",
    "memory_cache.eviction": "`lru`: the least recently read entry goes first; `fifo`: the oldest stored "
                             "(a hit does not reorder: slightly cheaper hits)",
}

_DEFAULTS: dict[str, str] = {
    "routes[].cache": "off",
    "memory_cache": "64 MiB, 100000 entries, LRU",
}

_NOTES: dict[str, str] = {
    "routes[].cache": "Keys, streams, single flight and storage: `docs/ratelimit-cache.md`.",
    "memory_cache": "Sizing, eviction and Redis memory: `docs/ratelimit-cache.md`.",
}

DOCS = KeyDocs(
    descriptions=_DESCRIPTIONS,
    defaults=_DEFAULTS,
    notes=_NOTES,
    tables=("routes[].cache", "memory_cache"),
)
