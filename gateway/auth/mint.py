"""Mint tokens for an HS* issuer: for the demo, tests and operators' smoke checks."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt

from gateway.config.schema import IssuerConfig


def mint_token(issuer: IssuerConfig, subject: str, *, scopes: list[str] | None = None,
               models: list[str] | None = None, tier: str | None = None, tenant: str | None = None,
               ttl_s: int = 3600, extra: dict[str, Any] | None = None) -> str:
    if not issuer.secret:
        raise ValueError(f"issuer {issuer.name!r} has no HS secret; only HS* issuers can mint here")
    now = int(time.time())
    claims: dict[str, Any] = {"iss": issuer.issuer, "sub": subject, "iat": now, "exp": now + ttl_s,
                    "jti": uuid.uuid4().hex}
    if issuer.audience:
        claims["aud"] = issuer.audience
    m = issuer.claims
    if scopes:
        claims[m.scope] = " ".join(scopes)
    if models:
        claims[m.models] = list(models)
    if tier:
        claims[m.tier] = tier
    if tenant:
        claims[m.tenant] = tenant
    claims.update(extra or {})
    return jwt.encode(claims, issuer.secret, algorithm=issuer.algorithms[0])
