"""JWT verification for several issuers, with a bounded cache of verified tokens."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import jwt

from gateway.auth.keys import KeySource, UnknownKey
from gateway.config.schema import IssuerConfig
from gateway.errors import GatewayError
from gateway.metrics import auth_failures_total

log = logging.getLogger("edgegw.auth")

# Time claims beyond this (about the year 5138) are not times: a token carrying one is refused
# rather than fed to float/datetime arithmetic that overflows.
_MAX_TIME = 1e11
_TIME_CLAIMS = ("exp", "nbf", "iat")


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified caller and what it may do."""

    issuer: str
    subject: str | None
    claims: dict[str, Any]
    scopes: frozenset[str]
    models: frozenset[str] | None  # None: any model
    routes: frozenset[str] | None  # None: any route
    tier: str
    tenant: str | None

    def may_use_model(self, model: str) -> bool:
        return self.models is None or model in self.models or "*" in self.models

    def may_use_route(self, route: str) -> bool:
        return self.routes is None or route in self.routes or "*" in self.routes


def auth_error(reason: str, message: str) -> GatewayError:
    auth_failures_total.labels(reason).inc()
    challenge = f'Bearer realm="edgegw", error="invalid_token", error_description="{message}"'
    return GatewayError(401, message, reason, headers={"www-authenticate": challenge})


class JwtVerifier:
    """Verifies bearer tokens against the configured issuers.

    The cache maps a hash of the token (never the token) to its `Identity` until the token's `exp`,
    so the hot path is one hash and one dict lookup instead of a signature check.
    """

    def __init__(self, issuers: tuple[IssuerConfig, ...], max_token_bytes: int = 8192,
                 cache_size: int = 50_000) -> None:
        self.issuers = {i.issuer: i for i in issuers}
        self.keys = {i.name: KeySource(i) for i in issuers}
        self.max_token_bytes = max_token_bytes
        self.cache_size = cache_size
        self._cache: dict[bytes, tuple[Identity, float]] = {}

    async def start(self) -> None:
        for source in self.keys.values():
            await source.start()

    async def verify(self, token: str, allowed: tuple[str, ...] = ()) -> Identity:
        """Return the caller's identity or raise a 401 `GatewayError` that says why."""
        if len(token) > self.max_token_bytes:
            raise auth_error("token_too_large", f"token exceeds {self.max_token_bytes} bytes")
        key = hashlib.blake2b(token.encode(), digest_size=20).digest()
        hit = self._cache.get(key)
        if hit is not None:
            identity, expires = hit
            if time.time() >= expires:
                del self._cache[key]
            elif not allowed or identity.issuer in allowed:
                return identity
        identity, expires = await self._verify_uncached(token, allowed)
        if len(self._cache) >= self.cache_size:
            # Drop the oldest tenth in one go: cheaper than LRU bookkeeping on every hit.
            for old in list(self._cache)[: max(1, self.cache_size // 10)]:
                del self._cache[old]
        self._cache[key] = (identity, expires)
        return identity

    async def _verify_uncached(self, token: str, allowed: tuple[str, ...]) -> tuple[Identity, float]:
        # The token is the caller's input: whatever it holds (a numeric kid, a header that is a list,
        # a time claim of 10^400) ends in a 401, never in an exception that escapes as a 500.
        try:
            return await self._check(token, allowed)
        except GatewayError:
            raise
        except jwt.InvalidTokenError as exc:
            raise auth_error("invalid_token", f"token is invalid: {type(exc).__name__}") from None
        except Exception as exc:  # noqa: BLE001 - see above; no traceback for a bad token
            log.debug("token refused: %s", type(exc).__name__)
            raise auth_error("malformed_token", "malformed token") from None

    async def _check(self, token: str, allowed: tuple[str, ...]) -> tuple[Identity, float]:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.InvalidTokenError:
            raise auth_error("malformed_token", "malformed token") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise auth_error("alg_none", "unsigned tokens (alg: none) are not accepted")
        iss = unverified.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise auth_error("unknown_issuer", "token issuer is not trusted")
        if allowed and issuer.name not in allowed:
            raise auth_error("issuer_not_allowed", "token issuer is not accepted on this route")
        if alg not in issuer.algorithms:
            raise auth_error("alg_not_allowed",
                             f"algorithm {alg} is not accepted for this issuer "
                             f"(expected {', '.join(issuer.algorithms)})")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise auth_error("malformed_token", "token header 'kid' must be a string")
        try:
            key = await self.keys[issuer.name].lookup_refreshing(kid)
        except UnknownKey:
            raise auth_error("unknown_kid", "token signing key (kid) is unknown") from None
        _check_times(unverified)
        required = ["exp", *issuer.required_claims]
        try:
            claims = jwt.decode(
                token, key, algorithms=[alg], audience=issuer.audience, issuer=issuer.issuer,
                leeway=issuer.leeway_s,
                options={"require": required, "verify_aud": issuer.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise auth_error("token_expired", "token has expired") from None
        except jwt.ImmatureSignatureError:
            raise auth_error("token_not_yet_valid", "token is not yet valid (nbf/iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise auth_error("invalid_audience", "token audience is not accepted") from None
        except jwt.InvalidIssuerError:
            raise auth_error("invalid_issuer", "token issuer is not trusted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise auth_error("missing_claim", f"token is missing the required claim '{exc.claim}'") from None
        except jwt.InvalidSignatureError:
            raise auth_error("bad_signature", "token signature is invalid") from None
        except (jwt.InvalidKeyError, jwt.InvalidAlgorithmError):
            raise auth_error("alg_not_allowed", f"algorithm {alg} does not match the issuer's key") from None
        except jwt.InvalidTokenError as exc:
            raise auth_error("invalid_token", f"token is invalid: {type(exc).__name__}") from None
        exp = float(claims["exp"])
        if issuer.max_lifetime_s is not None and "iat" in claims and exp - float(claims["iat"]) > issuer.max_lifetime_s:
            raise auth_error("token_lifetime", "token lifetime exceeds the issuer's maximum")
        return _identity(issuer, claims), exp


def _check_times(claims: dict[str, Any]) -> None:
    """`exp`/`nbf`/`iat`, when present, are finite numbers of a sane size (not strings, bools, 10^400)."""
    for name in _TIME_CLAIMS:
        if name not in claims:
            continue
        value = claims[name]
        # (Range checks compare big ints exactly and are false for NaN and infinities.)
        if (type(value) is not int and type(value) is not float) or not -_MAX_TIME < value < _MAX_TIME:
            raise auth_error("invalid_claim", f"token claim '{name}' must be a NumericDate (seconds)")


def _identity(issuer: IssuerConfig, claims: dict[str, Any]) -> Identity:
    m = issuer.claims
    scope = claims.get(m.scope, claims.get("scp"))
    tier = claims.get(m.tier)
    tenant = claims.get(m.tenant)
    return Identity(
        issuer=issuer.name,
        subject=str(claims["sub"]) if "sub" in claims else None,
        claims=claims,
        scopes=_names(scope) or frozenset(),
        models=_names(claims.get(m.models)),
        routes=_names(claims.get(m.routes)),
        tier=str(tier) if isinstance(tier, str | int) else issuer.default_tier,
        tenant=str(tenant) if isinstance(tenant, str | int) else None,
    )


def _names(value: Any) -> frozenset[str] | None:
    """A claim holding names: a list, or a space-separated string (OAuth `scope` style)."""
    if value is None:
        return None
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list):
        return frozenset(str(v) for v in value)
    return frozenset()


def bearer_token(authorization: str | None) -> str:
    """Extract the token from an Authorization header or raise 401."""
    if not authorization:
        raise auth_error("missing_token", "missing bearer token (Authorization: Bearer <jwt>)")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise auth_error("missing_token", "Authorization header must be 'Bearer <jwt>'")
    return token.strip()
