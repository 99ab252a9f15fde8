"""Partner and operator authentication as a feature: the `issuers:` and `admin:` keys (read by the
frame), the token verifier (kept across reloads while the issuers are unchanged) and the JWT stage."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.auth.docs import DOCS
from gateway.auth.stage import JwtAuthStage
from gateway.auth.verifier import JwtVerifier
from gateway.config.part import LIVE, ConfigPart, Reload
from gateway.config.schema import GatewayConfig
from gateway.feature import Assembly, Feature, Placed

PART: ConfigPart[None, None, None] = ConfigPart(
    "auth",
    reload={
        "issuers": Reload(LIVE, "a changed issuer list gets a new verifier: JWKS fetched again, token cache empty"),
        "admin": Reload(LIVE, "the admin check of the new version applies to the next admin request"),
    },
    docs=DOCS,
)


def _verifier(assembly: Assembly) -> JwtVerifier:
    config = assembly.config
    return JwtVerifier(config.issuers, config.server.max_token_bytes)


def _unchanged(config: GatewayConfig) -> object:
    return config.issuers, config.server.max_token_bytes


def _stages(assembly: Assembly, verifier: JwtVerifier | None) -> Sequence[Placed]:
    assert verifier is not None
    return [("authenticate", JwtAuthStage(verifier))]


AUTH: Feature[JwtVerifier] = Feature(PART, state=_verifier, unchanged=_unchanged, stages=_stages)
