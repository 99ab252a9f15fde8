"""The frame's own keys (top level, `routes[]`): what they mean (their rows of docs/configuration.md)
and how a reload applies what no feature claims.

Each feature describes its own keys in its package (`gateway/<feature>/docs.py`, in its `ConfigPart`);
`gateway.docgen` merges them. `tests/config/test_config_docs.py` fails when a key read by a parser
has no description, or a description names a key no parser reads. Markdown is allowed; `|` is escaped.
"""

from __future__ import annotations

from gateway.config.part import LIVE, ConfigPart, KeyDocs, Reload
from gateway.config.schema import FALLBACK_TRIGGERS

_DOCS = KeyDocs(
    descriptions={
        "routes": "path (and optionally model) to pool, with auth, plugins, limits and caching",
        "routes[].name": "used in metrics, logs and the `routes` claim",
        "routes[].paths": "any of `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/generate`",
        "routes[].pool": "pool name",
        "routes[].models": "model names or globs this route accepts; the first route matching path and model wins",
        "routes[].default_model": "the model `/v1/generate` uses when the request names none; must be a "
                                  "generation model the route reaches (`check-config` says so)",
        "routes[].auth": "`jwt`, `none` (public), or `plugin` (an auth plugin decides)",
        "routes[].issuers": "issuer names accepted on this route",
        "routes[].max_tokens_limit": "the most `max_tokens` / `max_completion_tokens` a request may ask for; "
                                     "more is a 400 naming the field, in JSON and MessagePack alike (a backend "
                                     "that trusted 2^64-1 could size its memory by it)",
        "routes[].fallbacks": "fallbacks for every model requested on this route, in place of the model's own "
                              "first level (as `pools[].models[].fallbacks`); each must be a model the route's "
                              "`models` allow",
        "routes[].fallbacks[].model": "as `pools[].models[].fallbacks[].model`",
        "routes[].fallbacks[].pool": "as `pools[].models[].fallbacks[].pool`",
        "routes[].fallbacks[].when": "as `pools[].models[].fallbacks[].when`",
    },
    defaults={
        "routes[].pool": "the pool serving the model",
        "routes[].models": "any model of the pool",
        "routes[].default_model": "the first generation model of the pool(s) in config order",
        "routes[].issuers": "all",
        "routes[].fallbacks": "the model's own (`pools[].models[].fallbacks`)",
        "routes[].fallbacks[].pool": "the first pool serving the model",
    },
    allowed={"routes[].fallbacks[].when": ", ".join(f"`{t}`" for t in FALLBACK_TRIGGERS)},
    tables=("", "routes[]"),
)

# The frame as a part of the policy file: it reads nothing itself here (`gateway.config.loader` reads
# the frame); it describes the route keys every feature hangs off and how a reload treats the rest.
FRAME: ConfigPart[None, None, None] = ConfigPart(
    "frame",
    reload={
        "": Reload(LIVE, "new requests use the new version; requests in flight finish on theirs"),
        "routes": Reload(LIVE, "limiter windows, cache entries and plugin instances are kept"),
    },
    docs=_DOCS,
)
