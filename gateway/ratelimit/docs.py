"""What the keys of `routes[].rate_limits` mean: their rows of docs/configuration.md
(the types, defaults and ranges come from the parser's own reads, `gateway.docgen`)."""

from __future__ import annotations

from gateway.config.part import KeyDocs
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

_DESCRIPTIONS: dict[str, str] = {
    "routes[].rate_limits": "limits checked together in one round trip; see the table below",
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
}

for _key, _what in _QUOTAS.items():
    _DESCRIPTIONS[f"{_RL}.{_key}"] = f"at most this many {_what}"
    _DESCRIPTIONS[f"{_RL}.tiers.*.{_key}"] = f"this tier's `{_key}`; `unlimited` lifts it"

_DEFAULTS: dict[str, str] = {
    f"{_RL}.name": "`limit<index>`",
    f"{_RL}.tiers.*": "-",
}

for _key in _QUOTAS:
    _DEFAULTS[f"{_RL}.{_key}"] = "-"  # optional; a limit needs at least one quota
    _DEFAULTS[f"{_RL}.tiers.*.{_key}"] = "the limit's"

_ALLOWED: dict[str, str] = {
    f"{_RL}.key": ", ".join(f"`{p}`" for p in KEY_PARTS),
}

for _key in _QUOTAS:
    _ALLOWED[f"{_RL}.tiers.*.{_key}"] = "≥ 1 or `unlimited`" if _key == "concurrent" else "≥ 0 or `unlimited`"

# Types the recorded reads cannot express (a typed read plus a raw one for a special word).
_TYPES: dict[str, str] = {f"{_RL}.tiers.*.{_key}": "integer" for _key in _QUOTAS}

_NOTES: dict[str, str] = {
    "routes[].rate_limits[]": (
        "Algorithm, keys, token settlement and Redis failure modes: `docs/ratelimit-cache.md`."),
}

DOCS = KeyDocs(
    descriptions=_DESCRIPTIONS,
    defaults=_DEFAULTS,
    allowed=_ALLOWED,
    types=_TYPES,
    notes=_NOTES,
    tables=("routes[].rate_limits[]",),
    free_form=("routes[].rate_limits[].tiers",),
)
