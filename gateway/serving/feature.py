"""The listener as a feature: the `server:` keys (read by the frame, `gateway.config.schema.ServerConfig`)
and how a reload applies them. Connection limits apply from the next connection on."""

from __future__ import annotations

from gateway.config.part import LIVE, NEXT_CONNECTION, RESTART, ConfigPart, Reload
from gateway.config.schema import GatewayConfig
from gateway.feature import Feature
from gateway.serving import protocol
from gateway.serving.docs import DOCS

_SOCKET = Reload(RESTART, "the listening socket is bound at start")
_PER_CONNECTION = Reload(NEXT_CONNECTION, "a connection keeps the limits it was opened with")

PART: ConfigPart[None, None, None] = ConfigPart(
    "serving",
    reload={
        "server.host": _SOCKET,
        "server.port": _SOCKET,
        "server.workers": Reload(RESTART, "the worker processes are forked at start"),
        "server.tls": Reload(RESTART, "TLS on/off and file paths are set up with the socket (renewed files are "
                                      "re-read by themselves)"),
        "server.keepalive_timeout_s": Reload(RESTART, "uvicorn's keep-alive timer is set at start"),
        "server.header_timeout_s": _PER_CONNECTION,
        "server.body_timeout_s": _PER_CONNECTION,
        "server.max_header_bytes": _PER_CONNECTION,
        "server.max_headers": _PER_CONNECTION,
        "server.max_connections": Reload(NEXT_CONNECTION, "counted against as connections open"),
        "server.max_token_bytes": Reload(LIVE, "a new token verifier (its token cache starts empty)"),
        "server.access_log": Reload(LIVE, "the next request is logged to the new target"),
        "server.max_body_bytes": Reload(LIVE, "checked per request"),
        "server.trust_forwarded_for": Reload(LIVE, "read per request"),
    },
    docs=DOCS,
)


def _install(config: GatewayConfig) -> None:
    protocol.configure(protocol.ListenerLimits.of(config.server))  # from the next connection


SERVING: Feature[None] = Feature(PART, installed=_install)
