"""What the keys of `admin` and `issuers`: who may call and who may administer mean: their rows of docs/configuration.md
(the types, defaults and ranges come from the parser's own reads, `gateway.docgen`)."""

from __future__ import annotations

from gateway.config.loader import ALGORITHMS
from gateway.config.part import KeyDocs

_DESCRIPTIONS: dict[str, str] = {
    "admin": "who may use `/admin` (status page, plugin API)",
    "issuers": "JWT issuers: who may call",
    "admin.issuer": "the issuer whose tokens may administer the gateway; required when `/admin` is "
                    "enabled and issuers are configured (a partner's IdP must not mint admin tokens)",
    "admin.enabled": "serve `/admin` (status page, plugin API); false: every `/admin` path answers 404",
    "admin.scope": "the scope an operator's token must carry",
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
}

_DEFAULTS: dict[str, str] = {
    "admin.issuer": "required",
}

_ALLOWED: dict[str, str] = {
    "issuers[].algorithms": ", ".join(f"`{a}`" for a in ALGORITHMS),
}

_NOTES: dict[str, str] = {
    "issuers[]": (
        "Rejections are 401 with `WWW-Authenticate: Bearer error=\"invalid_token\"` and a message saying why:\n"
        "missing, malformed or oversized token, `alg: none`, an algorithm the issuer does not accept (this is\n"
        "where an HS256 token made with an RSA public key ends), unknown `kid`, bad signature, untrusted `iss`,\n"
        "wrong `aud`, expired, not yet valid, missing claim. A valid token without permission for the route or\n"
        "model gets 403."),
}

DOCS = KeyDocs(
    descriptions=_DESCRIPTIONS,
    defaults=_DEFAULTS,
    allowed=_ALLOWED,
    notes=_NOTES,
    tables=("admin", "issuers[]"),
)
