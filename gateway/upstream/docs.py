"""What the keys of `pools` and their `dns` / `rollout` / `inference` mean: their rows of docs/configuration.md
(the types, defaults and ranges come from the parser's own reads, `gateway.docgen`)."""

from __future__ import annotations

from gateway.config.part import KeyDocs
from gateway.config.schema import FALLBACK_TRIGGERS

_DESCRIPTIONS: dict[str, str] = {
    "pools": "backend pools of OpenAI-compatible servers; at least one",
    "pools[].name": "referenced by routes",
    "pools[].models": "models this pool serves, by the names partners use; generation models first, in "
                      "order of preference. A string is a name or glob the backend knows as written; a mapping "
                      "gives one model an alias, a context window or fallbacks (`docs/api.md`, Models)",
    "pools[].models[].name": "the public name: what partners send and see, what limits, the cache, usage "
                             "and metrics key on, what `/v1/models` lists",
    "pools[].models[].backend_name": "the name this pool's servers expect (vLLM `--served-model-name`); the "
                                     "forwarded body carries it, answers are rewritten back to `name`",
    "pools[].models[].context_length": "tokens of prompt plus `max_tokens` the model holds; a request that "
                                       "surely does not fit goes to a `context_length` fallback, else 400 "
                                       "`context_length_exceeded`, before any backend is asked",
    "pools[].models[].max_token_bytes": "bytes of the longest token of the model's vocabulary (SmolLM2: 81): "
                                        "a prompt is at least its bytes / this many tokens, so the window "
                                        "check never refuses what the backend accepts",
    "pools[].models[].fallbacks": "models tried in order when this one fails as `when` says; a fallback's own "
                                  "fallbacks are its alternatives (depth first). `check-config` refuses cycles",
    "pools[].models[].fallbacks[].model": "a model some pool serves (a name, not a pattern)",
    "pools[].models[].fallbacks[].pool": "the pool to send it to (e.g. the same model elsewhere)",
    "pools[].models[].fallbacks[].when": "what sends a request here: `no_healthy_endpoint`, `upstream_error` "
                                         "(connect failure, 5xx after retries, a stream ending before its first "
                                         "byte), `overloaded` (429, 503, pool saturated), `first_byte_timeout`, "
                                         "`context_length`",
    "pools[].discover_context_length": "read each model's window (`max_model_len`) from the servers' "
                                       "`GET /v1/models` at start-up (the built-in backend and vLLM list it), "
                                       "for model entries without `context_length`; the largest across "
                                       "endpoints counts",
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
                        "weighted round robin: exact splits), `inference` (prefix affinity + the servers' queue "
                        "and KV use, see docs/routing.md)",
    "pools[].inference": "settings of `balancer: inference` (ignored by the other balancers)",
    "pools[].inference.metrics_path": "the servers' Prometheus page (vLLM, SGLang `--enable-metrics`, built-in)",
    "pools[].inference.scrape_interval_s": "how often each endpoint's metrics are read",
    "pools[].inference.scrape_timeout_s": "a slower scrape is dropped (the endpoint's signals stay as they were)",
    "pools[].inference.stale_after_s": "older signals count as unknown: the gateway's own in-flight count is used",
    "pools[].inference.max_metrics_bytes": "a larger metrics page is no reading",
    "pools[].inference.load_factor": "load guard: no endpoint takes a request at this times the mean load in "
                                     "flight (+1) unless within 4 of the least loaded",
    "pools[].inference.balance_ratio": "load guard: no endpoint takes a request once it was sent this times the "
                                       "requests of the least routed endpoint with a free slot, lately (+4)",
    "pools[].inference.index_blocks": "prefix blocks (512 bytes of prompt each) remembered per pool and worker",
    "pools[].inference.session_header": "a client header naming the session, used like the `user` field: a hint",
    "pools[].inference.shared_index": "exchange the prefix index with the pool's other gateway workers and "
                                      "replicas through Redis, off the request path (docs/routing.md); absent: "
                                      "each worker routes on what it routed itself",
    "pools[].inference.shared_index.redis_url": "a single Redis node (often the top-level `redis.url`)",
    "pools[].inference.shared_index.key": "the pool's Redis stream; default `edgegw:routing-index:<pool name>`",
    "pools[].inference.shared_index.interval_s": "how often each worker sends its decisions and reads the others'",
    "pools[].inference.shared_index.timeout_ms": "one exchange's deadline (it never delays a request)",
    "pools[].inference.shared_index.retry_s": "after a failed exchange Redis is left alone this long; meanwhile "
                                              "the worker routes on its own index",
    "pools[].inference.shared_index.max_entries": "stream entries kept, about (one per worker and interval with "
                                                  "decisions to send); a starting worker reads the newest 256",
    "pools[].inference.shared_index.ttl_s": "an idle pool's stream expires after this long",
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
                                    "each time the canary has 10% more; a dead canary is caught at the first look)",
    "pools[].rollout.max_error_rate_increase": "allowed increase of the canary's 5xx/connection-failure rate over "
                                               "the stable group's: a significant increase fails a step unless "
                                               "shown to be within this (0.02: two points)",
    "pools[].rollout.max_latency_ratio": "the canary's latencies may be this many times the stable group's "
                                         "(Mann-Whitney U on the distributions, not a p99 ratio; differences "
                                         "under 10 ms never fail a step)",
    "pools[].rollout.max_ttft_ratio": "streams: the same for the time to first byte",
    "pools[].rollout.confidence": "how sure a rollback must be: a healthy canary group is rolled back with a "
                                  "chance of at most 1 - confidence over all its looks (docs/policy-reload.md, "
                                  "How a canary is judged)",
    "pools[].rollout.failed_looks": "failing looks in a row that fail a step (Argo Rollouts' failure limit)",
    "pools[].dns.name": "the hostname whose A records are the endpoints",
    "pools[].dns.port": "every discovered address is reached on this port",
    "pools[].dns.scheme": "scheme of discovered endpoints",
    "pools[].dns.interval_s": "between lookups",
    "pools[].dns.timeout_s": "per lookup",
    "pools[].dns.resolver": "`host:port` of a DNS server to ask directly; absent: the system resolver "
                            "(kube-dns inside a pod)",
    "pools[].dns.weight": "weight of discovered endpoints (as `endpoints[].weight`)",
    "pools[].dns.group": "group label of discovered endpoints (as `endpoints[].group`)",
}

_DEFAULTS: dict[str, str] = {
    "pools[].rollout": "off (groups take traffic by `weight`)",
    "pools[].rollout.steps": "`[5, 25, 50, 100]`",
    "pools[].dns": "off",
    "pools[].headers.*": "-",
    "pools[].models[].backend_name": "`name`",
    "pools[].models[].fallbacks[].pool": "the first pool serving the model",
}

_TYPES: dict[str, str] = {"pools[].rollout.steps": "list of numbers",
                          "pools[].models": "list of strings or mappings"}

_NOTES: dict[str, str] = {
    "pools[].dns": (
        "A new address joins after one successful health check; one that disappears is drained and removed\n"
        "when idle, never leaving the pool without a healthy endpoint. A failed or empty lookup changes\n"
        "nothing. See `docs/operations.md`."),
}

DOCS = KeyDocs(
    descriptions=_DESCRIPTIONS,
    defaults=_DEFAULTS,
    allowed={"pools[].models[].fallbacks[].when": ", ".join(f"`{t}`" for t in FALLBACK_TRIGGERS)},
    types=_TYPES,
    notes=_NOTES,
    tables=("pools[]", "pools[].dns"),
    free_form=("pools[].headers",),
)
