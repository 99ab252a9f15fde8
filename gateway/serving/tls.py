"""The listener's TLS context: TLS 1.2+ with forward-secret AEAD ciphers, optional client
certificates, and a certificate that is re-read when its files change (no restart, no dropped
connections: handshakes after the change get the new certificate).

The swap happens in the ClientHello callback (OpenSSL calls it on every handshake, with or without
SNI): at most once a second it compares the files' (mtime, size, inode) with those loaded, and on a
change builds a fresh context and moves the handshake onto it. A half-written pair (new
certificate, old key) fails to load; the previous context keeps serving and the next change is
tried again.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Callable
from typing import Any

from gateway.config.reader import ConfigError
from gateway.config.schema import TlsConfig

log = logging.getLogger("edgegw.tls")

# TLS 1.2 suites: ECDHE key exchange and AEAD only. TLS 1.3 suites are all modern (OpenSSL's set).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS"
_CLIENT_AUTH = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_CHECK_INTERVAL_S = 1.0


def build_context(tls: TlsConfig) -> ssl.SSLContext:
    """A server context for `tls`; raises OSError or ssl.SSLError when the files do not load."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[tls.min_version]
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    ctx.load_cert_chain(tls.cert_file, tls.key_file)
    ctx.verify_mode = _CLIENT_AUTH[tls.client_auth]
    if tls.client_ca_file:
        ctx.load_verify_locations(cafile=tls.client_ca_file)
    # The listener speaks HTTP/1.1 only; saying so lets HTTP/2-capable clients settle at once.
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def check(tls: TlsConfig, file: str) -> None:
    """Fail start-up with the config key named when the certificate, key or CA does not load."""
    try:
        build_context(tls)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(file, "server.tls", f"cannot load the certificate, key or client CA: {exc}") from None


class ReloadingContext:
    """Owns the current context and replaces it when the certificate files change."""

    def __init__(self, tls: TlsConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.tls = tls
        self._clock = clock
        self._signature = self._files()
        self.context = self._build()
        self._checked = clock()
        self._failed: tuple[Any, ...] | None = None

    def _files(self) -> tuple[Any, ...]:
        out: list[tuple[int, int, int] | None] = []
        for path in (self.tls.cert_file, self.tls.key_file, self.tls.client_ca_file):
            if path:
                try:
                    st = os.stat(path)
                    out.append((st.st_mtime_ns, st.st_size, st.st_ino))
                except OSError:
                    out.append(None)
        return tuple(out)

    def _build(self) -> ssl.SSLContext:
        ctx = build_context(self.tls)
        ctx.sni_callback = self._on_client_hello
        return ctx

    def maybe_reload(self) -> None:
        now = self._clock()
        if now - self._checked < _CHECK_INTERVAL_S:
            return
        self._checked = now
        signature = self._files()
        if signature == self._signature or signature == self._failed:
            return
        try:
            self.context = self._build()
        except (OSError, ssl.SSLError) as exc:
            self._failed = signature  # log once per change, retry on the next one
            log.warning("TLS certificate files changed but do not load (%s); still serving the previous one", exc)
            return
        self._signature, self._failed = signature, None
        log.info("TLS certificate reloaded from %s", self.tls.cert_file)

    def _on_client_hello(self, conn: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        self.maybe_reload()
        if ctx is not self.context:
            conn.context = self.context


def context_factory(tls: TlsConfig, _uvicorn_config: object, _default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn's `ssl_context_factory` (with the policy's `server.tls` bound): runs in each worker process."""
    return ReloadingContext(tls).context
