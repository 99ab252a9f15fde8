"""Where an issuer's verification keys come from: a secret, a PEM file, a JWKS file or a JWKS URL."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from prometheus_client import Counter

from gateway.config.schema import IssuerConfig
from gateway.metrics import registry

log = logging.getLogger("edgegw.auth")

jwks_refresh_failures_total = Counter(
    "edgegw_jwks_refresh_failures_total",
    "JWKS fetches that did not replace the key set (failed, malformed or empty), by issuer and reason",
    ["issuer", "reason"], registry=registry)


class BadKeySet(Exception):
    """A JWKS document without a single usable key."""


class UnknownKey(Exception):
    """No key with the token's `kid`."""


class KeySource:
    """Resolves the key for a token header. JWKS URLs are refreshed on an unknown `kid`, rate-limited."""

    def __init__(self, issuer: IssuerConfig) -> None:
        self.issuer = issuer
        self._keys: dict[str | None, Any] = {}
        self._last_fetch = 0.0
        if issuer.secret:
            self._keys[None] = issuer.secret.encode()
        elif issuer.public_key_file:
            self._keys[None] = jwt.algorithms.get_default_algorithms()[issuer.algorithms[0]].prepare_key(
                Path(issuer.public_key_file).read_bytes())
        elif issuer.jwks_file:
            self._load_jwks(json.loads(Path(issuer.jwks_file).read_text()))

    async def start(self) -> None:
        if self.issuer.jwks_url:
            await self._fetch()

    def lookup(self, kid: str | None) -> Any:
        """The key for `kid`, or raise UnknownKey. Synchronous: the hot path never awaits."""
        if kid in self._keys:
            return self._keys[kid]
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        if None in self._keys and kid is not None and not self.issuer.jwks_url and not self.issuer.jwks_file:
            return self._keys[None]  # a single secret or PEM ignores kid
        raise UnknownKey(kid)

    async def lookup_refreshing(self, kid: str | None) -> Any:
        try:
            return self.lookup(kid)
        except UnknownKey:
            if not self.issuer.jwks_url:
                raise
            # A rotated key shows up as an unknown kid; refetch, but at most once per interval so
            # tokens with made-up kids cannot make us hammer the identity provider.
            if time.monotonic() - self._last_fetch < self.issuer.jwks_refresh_s:
                raise
            await self._fetch()
            return self.lookup(kid)

    async def _fetch(self) -> None:
        self._last_fetch = time.monotonic()
        url = self.issuer.jwks_url
        if url is None:  # only issuers with a jwks_url fetch
            return
        try:
            timeout = aiohttp.ClientTimeout(total=5)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
                resp.raise_for_status()
                data = await resp.json(content_type=None)
            keys = self._parse_jwks(data)
        except BadKeySet as exc:
            self._refresh_failed("bad_key_set", str(exc))
        except Exception as exc:  # the IdP may be briefly down or answer garbage
            self._refresh_failed("fetch_failed", type(exc).__name__)
        else:
            self._keys = keys

    def _refresh_failed(self, reason: str, detail: str) -> None:
        # Keep the last good keys: an IdP that briefly serves an empty or broken document (or one
        # an attacker provoked with a made-up kid at the wrong moment) must not lock out every caller.
        jwks_refresh_failures_total.labels(self.issuer.name, reason).inc()
        log.warning("issuer %s: JWKS from %s not used, keeping the %d keys we have: %s",
                    self.issuer.name, self.issuer.jwks_url, len(self._keys), detail)

    def _load_jwks(self, data: Any) -> None:
        try:
            self._keys = self._parse_jwks(data)
        except BadKeySet as exc:
            log.warning("issuer %s: %s has no usable key: %s", self.issuer.name, self.issuer.jwks_file, exc)

    def _parse_jwks(self, data: Any) -> dict[str | None, Any]:
        """The usable keys of a JWKS document, by kid; BadKeySet when it has none."""
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise BadKeySet("not a JWKS document (an object with a 'keys' list)")
        keys: dict[str | None, Any] = {}
        for jwk in data["keys"]:
            kid = jwk.get("kid") if isinstance(jwk, dict) else None
            if not isinstance(jwk, dict) or (kid is not None and not isinstance(kid, str)):
                log.warning("issuer %s: skipping a malformed JWK entry", self.issuer.name)
                continue
            try:
                parsed = jwt.PyJWK(jwk)
            except Exception as exc:  # noqa: BLE001 - PyJWK raises many kinds on bad key material
                log.warning("issuer %s: skipping unusable JWK %s: %s", self.issuer.name, kid,
                            type(exc).__name__)
                continue
            keys[kid] = parsed.key
        if not keys:
            raise BadKeySet(f"no usable key among {len(data['keys'])} entries")
        return keys
