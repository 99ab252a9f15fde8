"""RateLimit response headers and the 429 a limited request gets."""

from __future__ import annotations

from gateway.errors import GatewayError
from gateway.ratelimit.rules import Check

_PER = {1000: "second", 60_000: "minute", 3_600_000: "hour", 86_400_000: "day"}


def _seconds(ms: int) -> int:
    return max(0, -(-ms // 1000))


def limit_headers(check: Check, into: dict[str, str]) -> None:
    """Add the headers for the quota nearest exhaustion (the denied one when refused) to `into`.

    `draft`: RateLimit-Limit / -Remaining / -Reset. `ietf`: RateLimit-Policy and RateLimit.
    """
    out = check.out
    denied = out[1] - 1  # (-1: admitted)
    if denied >= 0 and check.rules[denied].limit.headers != "none":
        at = denied
    else:
        at, lowest = -1, 2.0
        for i, rule in enumerate(check.rules):
            if rule.limit.headers != "none":
                share = out[3 + 3 * i] / rule.cap if rule.cap else 0.0
                if share < lowest:
                    at, lowest = i, share
        if at < 0:
            return
    rule = check.rules[at]
    remaining = 0 if at == denied else out[3 + 3 * at]
    reset = _seconds(out[2] if at == denied else out[4 + 3 * at])
    if rule.limit.headers == "ietf":
        policy = f'"{rule.limit.name}";q={rule.cap}'
        if rule.window_ms:
            policy += f";w={rule.window_ms // 1000 or 1}"
        into["ratelimit-policy"] = policy
        into["ratelimit"] = f'"{rule.limit.name}";r={remaining};t={reset}'
        return
    into["ratelimit-limit"] = str(rule.cap)
    into["ratelimit-remaining"] = str(remaining)
    into["ratelimit-reset"] = str(reset)


def rejection(check: Check) -> GatewayError:
    """429 with an OpenAI-style body and Retry-After (whole seconds, at least 1)."""
    rule = check.denied
    assert rule is not None
    q = rule.quota
    if q.kind == "concurrent":
        what = f"{q.limit} concurrent requests"
    else:
        what = f"{q.limit} {q.kind} per {_PER.get(q.window_ms, f'{q.window_ms // 1000}s')}"
    retry = max(1, _seconds(check.retry_ms))
    message = (f"rate limit {rule.limit.name!r} exceeded ({what} per {'+'.join(rule.limit.key)}); "
               f"retry after {retry}s")
    code = "tokens_rate_limit_exceeded" if q.kind == "tokens" else "rate_limit_exceeded"
    return GatewayError(429, message, code, headers={"retry-after": str(retry)})
