"""An identity provider's JWKS endpoint on loopback, for the tests of keys fetched from a URL."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt

# What the endpoint answers in each `mode` besides "ok" (the current `keys`): (status, body).
FAULTS: dict[str, tuple[int, bytes]] = {
    "empty": (200, b'{"keys": []}'),
    "no-keys": (200, b'{"issuer": "x"}'),
    "garbage": (200, b"<html>maintenance</html>"),
    "500": (500, b"{}"),
    "bad-keys": (200, json.dumps({"keys": [{"kty": "RSA", "kid": "x", "n": "!!", "e": "AQAB"}, 5,
                                           {"kty": "oct", "kid": 7}]}).encode()),
}


def jwk(key: Any, kid: str, alg: str = "RS256") -> dict[str, Any]:
    """The public JWK of a private key, as an IdP publishes it."""
    data = json.loads(jwt.get_algorithm_by_name(alg).to_jwk(key.public_key()))
    return {**data, "kid": kid, "alg": alg, "use": "sig"}


class JwksServer:
    """Serves `{"keys": keys}` and counts fetches; `mode` (ok | a key of FAULTS) picks the next answers."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.mode = "ok"
        self.fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                outer.fetches += 1
                status, body = FAULTS.get(outer.mode, (200, json.dumps({"keys": outer.keys}).encode()))
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
