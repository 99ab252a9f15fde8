"""Request headers every endpoint reads the same way."""

from __future__ import annotations

from gateway.errors import GatewayError


def single_authorization(raw_headers: list[tuple[bytes, bytes]]) -> None:
    """400 when Authorization is sent more than once: which copy counts would otherwise depend on
    the reader (first or last), so no copy is chosen. ASGI servers lower-case header names."""
    seen = False
    for name, _ in raw_headers:
        if name == b"authorization":
            if seen:
                raise GatewayError(400, "the Authorization header is repeated; send exactly one",
                                   "duplicate_authorization")
            seen = True
