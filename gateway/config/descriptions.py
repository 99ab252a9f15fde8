"""What each configuration key means, keyed by generic path: the hand-written half of docs/configuration.md.

The other half (type, default, allowed values, range) comes from the parsers' own reads, recorded by
`gateway.config.docgen`. `tests/config/test_config_docs.py` fails when a key read by a parser has no entry
here, or an entry here names a key no parser reads. Markdown is allowed; `|` is escaped by docgen.
"""

from __future__ import annotations

from gateway.config.loader import ALGORITHMS, PHASES
from gateway.ratelimit.config import KEY_PARTS

_RL = "routes[].rate_limits[]"

# What one quota key counts; a tier's override of it is described from the same words below.
_QUOTAS: dict[str, str] = {
    "requests_per_second": "requests in any sliding second",
    "requests_per_minute": "requests in any sliding minute",
    "requests_per_hour": "requests in any sliding hour",
    "requests_per_day": "requests in any sliding day",
    "tokens_per_minute": "tokens (prompt plus reserved output, settled to `usage`) in any sliding minute",
    "tokens_per_day": "tokens in any sliding day",
    "concurrent": "requests in flight at once (a slot of a dead gateway frees itself after `lease_s`)",
}

DESCRIPTIONS: dict[str, str] = {
    # Top level
    "server": "the HTTP listener",
    "admin": "who may use `/admin` (status page, plugin API)",
    "issuers": "JWT issuers: who may call",
    "pools": "backend pools of OpenAI-compatible servers; at least one",
    "routes": "path (and optionally model) to pool, with auth, plugins, limits and caching",
    "redis": "Redis connection for rate limits and the cache; absent: both run in process memory "
             "(exact within one process), see `docs/ratelimit-cache.md`",
    "plugins": "wasm plugin definitions, bound to routes by name (`docs/plugins.md`)",
    "plugin_dir": "a directory (relative to the policy file) watched for `NAME.wasm`/`NAME.wat` plugin "
                  "versions; admin uploads are written there too, so workers and restarts converge",
    # server
    "server.host": "listen address (`edgegw serve --host` overrides)",
    "server.port": "listen port (`--port` overrides)",
    "server.workers": "uvicorn worker processes sharing the port (`--workers` overrides)",
    "server.max_body_bytes": "larger request bodies get 413 (media parts are counted apart, against "
                             "`routes[].media.max_bytes`)",
    "server.max_token_bytes": "larger bearer tokens get 401",
    "server.access_log": "`stdout`, `off`, or a file path; one JSON line per request",
    "server.trust_forwarded_for": "take the client address from `X-Forwarded-For` (only behind a trusted proxy)",
    "server.header_timeout_s": "the request line and headers must arrive within this long (from the connection "
                               "opening, or from the first byte of a later request), else 408 and close; a "
                               "connection that sent nothing is closed",
    "server.keepalive_timeout_s": "an idle keep-alive connection is closed after this long",
    "server.body_timeout_s": "a request body must arrive within this long after its headers, else 408 and close",
    "server.max_header_bytes": "larger request heads (request line and headers) get 431 and close",
    "server.max_headers": "requests with more header lines get 431 and close",
    "server.max_connections": "open client connections per worker process; the next one is answered 503 and "
                              "closed at once (see `docs/security.md`)",
    "server.tls": "serve HTTPS only (TLS 1.2+, ECDHE with AES-GCM or ChaCha20); absent: plain HTTP",
    "server.tls.cert_file": "PEM certificate chain (relative to the policy file); re-read when it changes on disk",
    "server.tls.key_file": "PEM private key of the certificate; re-read with it",
    "server.tls.client_ca_file": "PEM CA bundle that signs client certificates (mTLS)",
    "server.tls.client_auth": "`none`, `optional` (a certificate, if sent, must verify) or `required` "
                              "(no verified client certificate, no connection)",
    "server.tls.min_version": "lowest TLS version accepted",
    # admin
    "admin.issuer": "the issuer whose tokens may administer the gateway; required when `/admin` is "
                    "enabled and issuers are configured (a partner's IdP must not mint admin tokens)",
    "admin.enabled": "serve `/admin` (status page, plugin API); false: every `/admin` path answers 404",
    "admin.scope": "the scope an operator's token must carry",
    # issuers[]
    "issuers[].name": "referenced by routes and `admin.issuer`",
    "issuers[].issuer": "the exact `iss` claim",
    "issuers[].algorithms": "accepted `alg` values. HS and asymmetric families cannot be mixed in one "
                            "issuer (that is how algorithm confusion happens)",
    "issuers[].secret_env": "environment variable holding the HS secret (required for HS*)",
    "issuers[].jwks_file": "JWKS file (relative to the policy file)",
    "issuers[].jwks_url": "JWKS URL, fetched at start-up and again on an unknown `kid`, at most once per "
                          "`jwks_refresh_s`",
    "issuers[].jwks_refresh_s": "minimum interval between JWKS refetches",
    "issuers[].public_key_file": "a single PEM public key (relative to the policy file)",
    "issuers[].audience": "required `aud`; unchecked when absent",
    "issuers[].required_claims": "claims that must be present (`exp` is always required)",
    "issuers[].leeway_s": "clock skew allowed on `exp`/`nbf`/`iat`",
    "issuers[].max_lifetime_s": "reject tokens whose `exp - iat` is longer",
    "issuers[].claims": "which claims carry permissions; an absent claim means no restriction",
    "issuers[].claims.models": "claim listing the models the caller may use (list or space-separated; "
                               "absent = any)",
    "issuers[].claims.routes": "claim listing route names the caller may use (absent = any)",
    "issuers[].claims.tier": "claim naming the rate-limit tier",
    "issuers[].claims.tenant": "claim naming the tenant (rate-limit key, cache isolation)",
    "issuers[].claims.scope": "claim holding scopes (`scp` is also read)",
    "issuers[].default_tier": "tier when the token names none",
    # pools[]
    "pools[].name": "referenced by routes",
    "pools[].models": "model names (glob patterns allowed) this pool serves; generation models first, in "
                      "order of preference",
    "pools[].embedding_models": "embedding models this pool serves (also served when not in `models`); "
                                "never chosen as `/v1/generate`'s default",
    "pools[].image_models": "models (glob patterns) of this pool that accept image parts; media for any "
                            "other model is refused with 400 before forwarding (`docs/api.md`)",
    "pools[].audio_models": "models (glob patterns) of this pool that accept audio parts (`input_audio`)",
    "pools[].api_key_env": "environment variable holding the upstream's API key, sent as "
                           "`authorization: Bearer <key>` (a vLLM `--api-key`, a hosted service); the "
                           "client's own `authorization` is never forwarded",
    "pools[].headers": "extra headers sent to every endpoint of the pool (use `${VAR}` for secrets); "
                       "never logged or shown",
    "pools[].headers.*": "one header's value",
    "pools[].endpoints": "static backends; a pool needs `endpoints`, `dns`, or both",
    "pools[].endpoints[].url": "`http(s)://host:port` of an OpenAI-compatible server",
    "pools[].endpoints[].weight": "share of traffic with `balancer: weighted`",
    "pools[].endpoints[].group": "a label (e.g. `stable`, `canary`) shown in `/admin/pools`",
    "pools[].balancer": "`least_outstanding` (power of two choices), `round_robin`, `weighted` (smooth "
                        "weighted round robin: exact splits)",
    "pools[].max_inflight_per_endpoint": "an endpoint at this many outstanding requests is skipped; all "
                                         "full = fast 503",
    "pools[].max_response_bytes": "largest non-streamed answer read from a backend; a larger one is a failed "
                                  "attempt (502 `upstream_read_error`, retried, counted towards ejection)",
    "pools[].timeouts": "upstream deadlines",
    "pools[].timeouts.connect_s": "TCP connect",
    "pools[].timeouts.first_byte_s": "streamed requests: until the response starts, and the longest gap "
                                     "between stream chunks",
    "pools[].timeouts.total_s": "the whole exchange, streams included",
    "pools[].timeouts.non_stream_total_s": "non-streamed requests: the whole exchange (the backend sends nothing "
                                           "until its generation is done; capped by `total_s`)",
    "pools[].health": "active health checks",
    "pools[].health.path": "path probed with GET; healthy on 200",
    "pools[].health.interval_s": "between checks",
    "pools[].health.timeout_s": "per check",
    "pools[].outlier": "passive ejection of failing endpoints",
    "pools[].outlier.consecutive_failures": "failed attempts in a row that eject an endpoint: connect errors, "
                                            "resets, invalid HTTP answers, timeouts, 5xx",
    "pools[].outlier.base_ejection_s": "first ejection; doubles each time, reset by a success",
    "pools[].outlier.max_ejection_s": "cap on the ejection time",
    "pools[].retries": "retries on another endpoint",
    "pools[].retries.attempts": "extra tries on another endpoint (connect error, 502, 503; never after the "
                                "first byte reached the client)",
    "pools[].retries.budget_ratio": "retries may add at most this share of recent requests...",
    "pools[].retries.min_retries_per_s": "...but this many are always allowed",
    "pools[].dns": "endpoint discovery by DNS (a headless Kubernetes Service); see the table below",
    "pools[].rollout": "roll the canary endpoint group out step by step, judged against the other (stable) "
                       "endpoints; rolled back at once on a failed step, promoted after the last "
                       "(docs/policy-reload.md)",
    "pools[].rollout.canary_group": "the endpoints (`endpoints[].group`) being rolled out; every other "
                                    "endpoint of the pool is stable",
    "pools[].rollout.steps": "the canary's share of the pool's traffic, in percent, step by step (increasing)",
    "pools[].rollout.interval_s": "least time a step lasts before it can pass",
    "pools[].rollout.min_requests": "canary requests a step needs before it is first judged (then again "
                                    "every quarter of this; a dead canary is caught at the first look)",
    "pools[].rollout.max_error_rate_increase": "least increase of the canary's 5xx/connection-failure rate over "
                                               "the stable group's that fails a step, when significant at "
                                               "`confidence` (0.02: two points)",
    "pools[].rollout.max_latency_ratio": "the canary's latencies may be this many times the stable group's "
                                         "(Mann-Whitney U on the distributions, not a p99 ratio; differences "
                                         "under 10 ms never fail a step)",
    "pools[].rollout.max_ttft_ratio": "streams: the same for the time to first byte",
    "pools[].rollout.confidence": "how sure a failed step must be: one-sided confidence of each test at each "
                                  "look (docs/policy-reload.md, How a canary is judged)",
    "pools[].rollout.failed_looks": "failing looks in a row that fail a step (Argo Rollouts' failure limit)",
    # pools[].dns
    "pools[].dns.name": "the hostname whose A records are the endpoints",
    "pools[].dns.port": "every discovered address is reached on this port",
    "pools[].dns.scheme": "scheme of discovered endpoints",
    "pools[].dns.interval_s": "between lookups",
    "pools[].dns.timeout_s": "per lookup",
    "pools[].dns.resolver": "`host:port` of a DNS server to ask directly; absent: the system resolver "
                            "(kube-dns inside a pod)",
    "pools[].dns.weight": "weight of discovered endpoints (as `endpoints[].weight`)",
    "pools[].dns.group": "group label of discovered endpoints (as `endpoints[].group`)",
    # routes[]
    "routes[].name": "used in metrics, logs and the `routes` claim",
    "routes[].paths": "any of `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/generate`",
    "routes[].pool": "pool name",
    "routes[].models": "model names or globs this route accepts; the first route matching path and model wins",
    "routes[].default_model": "the model `/v1/generate` uses when the request names none; must be a "
                              "generation model the route reaches (`check-config` says so)",
    "routes[].auth": "`jwt`, `none` (public), or `plugin` (an auth plugin decides)",
    "routes[].issuers": "issuer names accepted on this route",
    "routes[].plugins": "ordered plugin chain (`docs/plugins.md`)",
    "routes[].plugins[].name": "a plugin of the top-level `plugins` list",
    "routes[].plugins[].phase": "where in the pipeline it runs: JWT auth → `auth` → rate limit → `routing` "
                                "→ pool selection → `preprocess` → cache → forward → `response`",
    "routes[].plugins[].config": "this route's plugin configuration, merged over the plugin's `config` "
                                 "(mappings merge shallowly, anything else replaces)",
    "routes[].rate_limits": "limits checked together in one round trip; see the table below",
    "routes[].cache": "response caching; absent: off. See the table below",
    "routes[].media": "limits on image and audio parts in chat requests (`docs/api.md`)",
    "routes[].media.max_bytes": "decoded media bytes per request, all parts together (larger: 400 naming the "
                                "part). The body limit grows by this much in base64 when a pool accepts "
                                "media: the text of a request still gets `server.max_body_bytes`",
    "routes[].media.max_parts": "image and audio parts per request, remote image URLs included",
    "routes[].media.mime_types": "media types accepted, checked against the type the bytes show (magic "
                                 "bytes), never the declared one alone",
    # routes[].rate_limits[]
    f"{_RL}.name": "unique in the route; in metrics, headers and keys",
    f"{_RL}.key": "what is counted separately: one part or a list. A part the request lacks is `_` "
                  "(such callers share one bucket)",
    f"{_RL}.tiers": "overrides by the token's tier claim (`issuers[].claims.tier`)",
    f"{_RL}.tiers.*": "one tier: overrides the quotas it names; the others stay",
    f"{_RL}.on_redis_error": "when Redis fails: `allow` skips the limit, `deny` answers 503 "
                             "`rate_limiter_unavailable`, `local` applies an in-process limiter (exact per worker)",
    f"{_RL}.token_estimate": "output tokens reserved when the request names no `max_tokens`",
    f"{_RL}.lease_s": "a concurrency slot of a dead gateway frees itself after this (leases are renewed "
                      "every `lease_s / 3`)",
    f"{_RL}.headers": "`draft`: `RateLimit-Limit`/`-Remaining`/`-Reset`; `ietf`: `RateLimit-Policy` and "
                      "`RateLimit`; `none`",
    # routes[].cache
    "routes[].cache.ttl_s": "entry lifetime",
    "routes[].cache.when": "`deterministic`: `temperature: 0` and embeddings, or opted in with "
                           "`x-edgegw-cache: on`; `header`: only opted-in requests; `always`: every request",
    "routes[].cache.max_bytes": "larger answers are not stored (checked uncompressed)",
    "routes[].cache.lock_s": "single-flight lock lease: how long the first miss may take before others go",
    "routes[].cache.wait_s": "how long identical misses wait for the first one (at most `lock_s`)",
    # redis
    "redis.url": "`redis://[:password@]host:port/db`, `rediss://` for TLS (redis-py URL options apply), "
                 "or `unix:///path`",
    "redis.timeout_ms": "deadline of every Redis call; a dead or frozen Redis never holds a request longer",
    "redis.key_prefix": "prefix of every key (no braces: they are hash tags)",
    "redis.cluster": "use the redis-py Redis Cluster client; `url` names any node",
    "redis.max_connections": "connection pool size per gateway worker",
    "redis.retry_interval_s": "while degraded, how often a request may probe Redis again",
    # memory_cache
    "memory_cache": "the in-process cache store, used when there is no `redis:` (per worker process)",
    "memory_cache.max_bytes": "total size of the stored (compressed) entries; beyond it entries are evicted",
    "memory_cache.max_entries": "number of entries; beyond it entries are evicted",
    "memory_cache.eviction": "`lru`: the least recently read entry goes first; `fifo`: the oldest stored "
                             "(a hit does not reorder: slightly cheaper hits)",
    # plugins[]
    "plugins[].name": "referenced by `routes[].plugins[].name`, the admin API and `plugin_dir` file names",
    "plugins[].file": "the `.wasm` (relative to the policy file); absent: from `plugin_dir` or the admin API",
    "plugins[].sha256": "pin: every version (file, upload, `plugin_dir`) must have this hash",
    "plugins[].config": "delivered through `proxy_on_configure`: a mapping or list as JSON, a string verbatim",
    "plugins[].vm_config": "delivered through `proxy_on_vm_start`",
    "plugins[].failure_policy": "on a plugin failure: `fail_closed` answers 500 `plugin_failed`, "
                                "`fail_open` skips the plugin",
    "plugins[].limits": "the sandbox",
    "plugins[].limits.fuel": "fuel (about instructions) per callback",
    "plugins[].limits.deadline_ms": "wall-clock deadline per callback",
    "plugins[].limits.memory_mb": "memory cap per instance",
    "plugins[].limits.http_call_timeout_ms": "timeout of a `proxy_http_call`",
    "plugins[].upstreams": "the only hosts `proxy_http_call` may reach, by name",
    "plugins[].upstreams.*": "`http(s)://host:port` of the upstream with this name",
    "plugins[].canary": "how a new version is trialled",
    "plugins[].canary.weight": "share of requests a new version takes",
    "plugins[].canary.max_failure_rate": "roll back when the canary's failure rate exceeds the stable "
                                         "version's by more than this, significantly at `confidence`",
    "plugins[].canary.min_requests": "canary requests on a route before it is first judged there",
    "plugins[].canary.window": "kept for old policies; no longer used (the judge counts every request since the "
                               "canary started)",
    "plugins[].canary.promote_after": "promote after this many requests when no route's evidence is still open "
                                      "(0: only by `POST /admin/plugins/NAME/promote`)",
    "plugins[].canary.confidence": "how sure a rollback must be: one-sided confidence of each test at each "
                                   "look (docs/policy-reload.md, How a canary is judged)",
    "plugins[].canary.failed_looks": "failing looks in a row that roll the canary back",
    "plugins[].root_id": "the `plugin_root_id` property: the root id an SDK registers its contexts under "
                         "(the C++ SDK's default is \"\")",
    "plugins[].vm_id": "the `plugin_vm_id` property",
    "plugins[].limits.min_tick_ms": "shortest tick period: a shorter `proxy_set_tick_period_milliseconds` is raised to it",
    "plugins[].canary.max_status_shift": "roll back when, on a route, the share of the canary's requests answered "
                                         "locally by the plugin, with a 4xx or with a 5xx exceeds the stable "
                                         "version's there by more than this, significantly at `confidence`",
}
for _key, _what in _QUOTAS.items():
    DESCRIPTIONS[f"{_RL}.{_key}"] = f"at most this many {_what}"
    DESCRIPTIONS[f"{_RL}.tiers.*.{_key}"] = f"this tier's `{_key}`; `unlimited` lifts it"

# Defaults the recorded read cannot express: computed, or meaning "absent", or a key that is
# required only once its enclosing `has()` check found it.
DEFAULTS: dict[str, str] = {
    "pools[].rollout": "off (groups take traffic by `weight`)",
    "pools[].rollout.steps": "`[5, 25, 50, 100]`",
    "server.tls": "off (plain HTTP)",
    "admin.issuer": "required",
    "routes[].pool": "the pool serving the model",
    "routes[].models": "any model of the pool",
    "routes[].default_model": "the first generation model of the pool(s) in config order",
    "routes[].issuers": "all",
    "routes[].cache": "off",
    "routes[].media": "4 MiB, 8 parts, every known type",
    "redis": "in memory",
    "memory_cache": "64 MiB, 100000 entries, LRU",
    "pools[].dns": "off",
    "pools[].headers.*": "-",
    f"{_RL}.name": "`limit<index>`",
    "plugins[].upstreams.*": "-",
    f"{_RL}.tiers.*": "-",
}
for _key in _QUOTAS:
    DEFAULTS[f"{_RL}.{_key}"] = "-"  # optional; a limit needs at least one quota
    DEFAULTS[f"{_RL}.tiers.*.{_key}"] = "the limit's"

# Allowed values checked by hand in the parsers rather than through `choices`.
ALLOWED: dict[str, str] = {
    "issuers[].algorithms": ", ".join(f"`{a}`" for a in ALGORITHMS),
    "routes[].plugins[].phase": ", ".join(f"`{p}`" for p in PHASES),
    f"{_RL}.key": ", ".join(f"`{p}`" for p in KEY_PARTS),
    "redis.url": "`redis://`, `rediss://`, `unix://`",
    "plugins[].sha256": "64 hex digits",
    "routes[].media.mime_types": "`image/png`, `image/jpeg`, `image/webp`, `image/gif`, `audio/wav`, `audio/mpeg`",
}
for _key in _QUOTAS:
    ALLOWED[f"{_RL}.tiers.*.{_key}"] = "≥ 1 or `unlimited`" if _key == "concurrent" else "≥ 0 or `unlimited`"

# Types the recorded reads cannot express (a typed read plus a raw one for a special word).
TYPES: dict[str, str] = {f"{_RL}.tiers.*.{_key}": "integer" for _key in _QUOTAS}
TYPES["pools[].rollout.steps"] = "list of numbers"

# Prose printed under a table's heading, by table prefix.
NOTES: dict[str, str] = {
    "issuers[]": (
        "Rejections are 401 with `WWW-Authenticate: Bearer error=\"invalid_token\"` and a message saying why:\n"
        "missing, malformed or oversized token, `alg: none`, an algorithm the issuer does not accept (this is\n"
        "where an HS256 token made with an RSA public key ends), unknown `kid`, bad signature, untrusted `iss`,\n"
        "wrong `aud`, expired, not yet valid, missing claim. A valid token without permission for the route or\n"
        "model gets 403."),
    "pools[].dns": (
        "A new address joins after one successful health check; one that disappears is drained and removed\n"
        "when idle, never leaving the pool without a healthy endpoint. A failed or empty lookup changes\n"
        "nothing. See `docs/operations.md`."),
    "routes[].rate_limits[]": (
        "Algorithm, keys, token settlement and Redis failure modes: `docs/ratelimit-cache.md`."),
    "routes[].cache": "Keys, streams, single flight and storage: `docs/ratelimit-cache.md`.",
    "redis": "Degraded mode and recovery: `docs/ratelimit-cache.md` and `docs/operations.md`.",
    "memory_cache": "Sizing, eviction and Redis memory: `docs/ratelimit-cache.md`.",
    "plugins[]": "Writing, deploying and hot-loading plugins: `docs/plugins.md`.",
}
