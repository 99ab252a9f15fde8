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
    rules = check.rules
    denied = check.denied_at  # (-1: admitted)
    at = denied
    if at < 0 or rules[at].headers == "none":
        at, lowest = -1, 2.0
        for i, remaining in enumerate(check.remaining_all()):
            rule = rules[i]
            share = remaining * rule.per_unit
            if share < lowest and rule.headers != "none":
                at, lowest = i, share
        if at < 0:
            return
    rule = rules[at]
    if at == denied:
        remaining, reset = 0, _seconds(check.retry_ms)
    else:
        remaining, reset = check.remaining(at), _seconds(check.reset_ms(at))
    if rule.headers == "ietf":
        policy = f'"{rule.limit.name}";q={rule.cap}'
        if rule.window_ms:
            policy += f";w={rule.window_ms // 1000 or 1}"
        into["ratelimit-policy"] = policy
        into["ratelimit"] = f'"{rule.limit.name}";r={remaining};t={reset}'
        return
    # (f-strings: cheaper than str() calls)
    into["ratelimit-limit"] = f"{rule.cap}"
    into["ratelimit-remaining"] = f"{remaining}"
    into["ratelimit-reset"] = f"{reset}"


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
