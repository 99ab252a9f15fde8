"""What the keys of `server`: the listener mean: their rows of docs/configuration.md
(the types, defaults and ranges come from the parser's own reads, `gateway.docgen`)."""

from __future__ import annotations

from gateway.config.part import KeyDocs

_DESCRIPTIONS: dict[str, str] = {
    "server": "the HTTP listener",
    "server.host": "listen address (`edgegw serve --host` overrides)",
    "server.port": "listen port (`--port` overrides)",
    "server.workers": "uvicorn worker processes sharing the port (`--workers` overrides)",
    "server.max_body_bytes": "larger request bodies get 413 (media parts are counted apart, against "
                             "`routes[].media.max_bytes`)",
    "server.max_token_bytes": "larger bearer tokens get 401",
    "server.access_log": "`stdout`, `off`, or a file path; one JSON line per request",
    "server.trust_forwarded_for": "take the client address from `X-Forwarded-For` (only behind a trusted proxy)",
    "server.header_timeout_s": "the request line and headers must arrive within this long (from the connection "
                               "opening, or from the first byte of a later request), else 408 and close; a "
                               "connection that sent nothing is closed",
    "server.keepalive_timeout_s": "an idle keep-alive connection is closed after this long",
    "server.body_timeout_s": "a request body must arrive within this long after its headers, else 408 and close",
    "server.max_header_bytes": "larger request heads (request line and headers) get 431 and close",
    "server.max_headers": "requests with more header lines get 431 and close",
    "server.max_connections": "open client connections per worker process; the next one is answered 503 and "
                              "closed at once (see `docs/security.md`)",
    "server.tls": "serve HTTPS only (TLS 1.2+, ECDHE with AES-GCM or ChaCha20); absent: plain HTTP",
    "server.tls.cert_file": "PEM certificate chain (relative to the policy file); re-read when it changes on disk",
    "server.tls.key_file": "PEM private key of the certificate; re-read with it",
    "server.tls.client_ca_file": "PEM CA bundle that signs client certificates (mTLS)",
    "server.tls.client_auth": "`none`, `optional` (a certificate, if sent, must verify) or `required` "
                              "(no verified client certificate, no connection)",
    "server.tls.min_version": "lowest TLS version accepted",
}

_DEFAULTS: dict[str, str] = {
    "server.tls": "off (plain HTTP)",
}

DOCS = KeyDocs(
    descriptions=_DESCRIPTIONS,
    defaults=_DEFAULTS,
    tables=("server",),
)
