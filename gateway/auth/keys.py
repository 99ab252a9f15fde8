"""Where an issuer's verification keys come from: a secret, a PEM file, a JWKS file or a JWKS URL."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt

from gateway.config.schema import IssuerConfig

log = logging.getLogger("edgegw.auth")


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
        try:
            timeout = aiohttp.ClientTimeout(total=5)
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
                resp.raise_for_status()
                data = await resp.json(content_type=None)
            self._load_jwks(data)
        except Exception as exc:  # keep the keys we have; the IdP may be briefly down
            log.warning("issuer %s: fetching JWKS from %s failed: %s", self.issuer.name, url,
                        type(exc).__name__)

    def _load_jwks(self, data: dict[str, Any]) -> None:
        keys: dict[str | None, Any] = {}
        for jwk in data.get("keys", []):
            try:
                parsed = jwt.PyJWK(jwk)
            except (jwt.PyJWKError, jwt.InvalidKeyError) as exc:
                log.warning("issuer %s: skipping unusable JWK %s: %s", self.issuer.name,
                            jwk.get("kid"), exc)
                continue
            keys[jwk.get("kid")] = parsed.key
        self._keys = keys
