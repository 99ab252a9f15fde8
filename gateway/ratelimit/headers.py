"""RateLimit response headers and the 429 a limited request gets."""

from __future__ import annotations

from gateway.errors import GatewayError
from gateway.ratelimit.rules import Decision, Rule

_PER = {1000: "second", 60_000: "minute", 3_600_000: "hour", 86_400_000: "day"}


def _seconds(ms: int) -> int:
    return max(0, -(-ms // 1000))


def limit_headers(rules: list[Rule], decision: Decision, into: dict[str, str]) -> None:
    """Add the headers for the quota nearest exhaustion (the denied one when refused) to `into`.

    `draft`: RateLimit-Limit / -Remaining / -Reset. `ietf`: RateLimit-Policy and RateLimit.
    """
    rule = decision.denied
    if rule is None or rule.limit.headers == "none":
        rule, lowest = None, 2.0
        for r in rules:
            if r.limit.headers != "none":
                share = r.remaining / r.quota.limit if r.quota.limit else 0.0
                if share < lowest:
                    rule, lowest = r, share
        if rule is None:
            return
    denied = rule is decision.denied
    remaining = 0 if denied else rule.remaining
    reset = _seconds(decision.retry_ms if denied else rule.reset_ms)
    if rule.limit.headers == "ietf":
        policy = f'"{rule.limit.name}";q={rule.quota.limit}'
        if rule.quota.window_ms:
            policy += f";w={rule.quota.window_ms // 1000 or 1}"
        into["ratelimit-policy"] = policy
        into["ratelimit"] = f'"{rule.limit.name}";r={remaining};t={reset}'
        return
    into["ratelimit-limit"] = str(rule.quota.limit)
    into["ratelimit-remaining"] = str(remaining)
    into["ratelimit-reset"] = str(reset)


def rejection(decision: Decision) -> GatewayError:
    """429 with an OpenAI-style body and Retry-After (whole seconds, at least 1)."""
    rule = decision.denied
    assert rule is not None
    q = rule.quota
    if q.kind == "concurrent":
        what = f"{q.limit} concurrent requests"
    else:
        what = f"{q.limit} {q.kind} per {_PER.get(q.window_ms, f'{q.window_ms // 1000}s')}"
    retry = max(1, _seconds(decision.retry_ms))
    message = (f"rate limit {rule.limit.name!r} exceeded ({what} per {'+'.join(rule.limit.key)}); "
               f"retry after {retry}s")
    code = "tokens_rate_limit_exceeded" if q.kind == "tokens" else "rate_limit_exceeded"
    return GatewayError(429, message, code, headers={"retry-after": str(retry)})
