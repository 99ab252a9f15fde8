"""What the keys of `routes[].media` mean: their rows of docs/configuration.md
(the types, defaults and ranges come from the parser's own reads, `gateway.docgen`)."""

from __future__ import annotations

from gateway.config.part import KeyDocs

_DESCRIPTIONS: dict[str, str] = {
    "routes[].media": "limits on image and audio parts in chat requests (`docs/api.md`)",
    "routes[].media.max_bytes": "decoded media bytes per request, all parts together (larger: 400 naming the "
                                "part). The body limit grows by this much in base64 when a pool accepts "
                                "media: the text of a request still gets `server.max_body_bytes`",
    "routes[].media.max_parts": "image and audio parts per request, remote image URLs included",
    "routes[].media.mime_types": "media types accepted, checked against the type the bytes show (magic "
                                 "bytes), never the declared one alone",
    "routes[].media.remote_urls": "schemes of remote image URLs forwarded for the backend to fetch (the "
                                  "gateway cannot check what they hold); any other scheme, or none, is a 400 "
                                  "`unsupported_url_scheme`. `[]`: `data:` URLs and bytes only (`docs/security.md`)",
}

_DEFAULTS: dict[str, str] = {
    "routes[].media": "4 MiB, 8 parts, every known type",
}

_ALLOWED: dict[str, str] = {
    "routes[].media.mime_types": "`image/png`, `image/jpeg`, `image/webp`, `image/gif`, `audio/wav`, `audio/mpeg`",
    "routes[].media.remote_urls": "`http`, `https` (case-insensitive)",
}

DOCS = KeyDocs(
    descriptions=_DESCRIPTIONS,
    defaults=_DEFAULTS,
    allowed=_ALLOWED,
    tables=(),
)
