"""Which policy changes a reload applies live, at the next client connection, or only at a restart.

`APPLIES` classifies every key by its longest prefix; `changes(old, new)` lists what differs between
two validated configs; `check-config --against URL` asks a running gateway (`POST /admin/policy/check`)
and prints the list. `python -m gateway.policy.restart` prints the table docs/policy-reload.md carries.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from gateway.config.schema import GatewayConfig

LIVE, NEXT_CONNECTION, RESTART = "live", "next connection", "restart"

# key prefix -> (when a reload applies it, what happens). The longest matching prefix wins.
APPLIES: dict[str, tuple[str, str]] = {
    "": (LIVE, "new requests use the new version; requests in flight finish on theirs"),
    "server.host": (RESTART, "the listening socket is bound at start"),
    "server.port": (RESTART, "the listening socket is bound at start"),
    "server.workers": (RESTART, "the worker processes are forked at start"),
    "server.tls": (RESTART, "TLS on/off and file paths are set up with the socket (renewed files are "
                            "re-read by themselves)"),
    "server.keepalive_timeout_s": (RESTART, "uvicorn's keep-alive timer is set at start"),
    "server.header_timeout_s": (NEXT_CONNECTION, "a connection keeps the limits it was opened with"),
    "server.body_timeout_s": (NEXT_CONNECTION, "a connection keeps the limits it was opened with"),
    "server.max_header_bytes": (NEXT_CONNECTION, "a connection keeps the limits it was opened with"),
    "server.max_headers": (NEXT_CONNECTION, "a connection keeps the limits it was opened with"),
    "server.max_connections": (NEXT_CONNECTION, "counted against as connections open"),
    "server.max_token_bytes": (LIVE, "a new token verifier (its token cache starts empty)"),
    "server.access_log": (LIVE, "the next request is logged to the new target"),
    "server.max_body_bytes": (LIVE, "checked per request"),
    "server.trust_forwarded_for": (LIVE, "read per request"),
    "issuers": (LIVE, "a changed issuer list gets a new verifier: JWKS fetched again, token cache empty"),
    "pools": (LIVE, "a changed pool is rebuilt and health-checked before it serves (its connections, "
                    "ejections and rollout start afresh); unchanged pools keep theirs"),
    "routes": (LIVE, "limiter windows, cache entries and plugin instances are kept"),
    "redis": (LIVE, "a new Redis link for the limiter and cache; shared counters stay in Redis"),
    "memory_cache": (LIVE, "a new in-process cache store: its entries start empty"),
    "plugins": (LIVE, "a new plugin manager (instances of every plugin start afresh); turning plugins on "
                      "or off entirely changes the /admin/plugins endpoints only at restart"),
    "plugin_dir": (LIVE, "as `plugins`"),
    "admin": (LIVE, "the admin check of the new version applies to the next admin request"),
}


def classify(key: str) -> tuple[str, str]:
    """(mode, why) for a dotted key such as `server.port` or `pools[gpu].endpoints`."""
    plain = key.split("[", 1)[0] if "[" in key.split(".", 1)[0] else key
    best = ""
    for prefix in APPLIES:
        if (plain == prefix or plain.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    return APPLIES[best]


def changes(old: GatewayConfig, new: GatewayConfig) -> list[str]:
    """Keys that differ, as dotted paths; pools, routes and issuers by name (`pools[gpu].endpoints`)."""
    out: list[str] = []
    for f in dataclasses.fields(GatewayConfig):
        if f.name in ("source", "extra"):
            continue
        _diff(f.name, getattr(old, f.name), getattr(new, f.name), out)
    return out


def _diff(path: str, a: Any, b: Any, out: list[str]) -> None:
    if a == b:
        return
    if dataclasses.is_dataclass(a) and type(a) is type(b):
        for f in dataclasses.fields(a):  # names only, never values: secrets are among them
            _diff(f"{path}.{f.name}", getattr(a, f.name), getattr(b, f.name), out)
        return
    if _named(a) and _named(b):
        left, right = {x.name: x for x in a}, {x.name: x for x in b}
        for name in dict.fromkeys([*left, *right]):
            if name not in left or name not in right:
                out.append(f"{path}[{name}]")
            else:
                _diff(f"{path}[{name}]", left[name], right[name], out)
        if [x.name for x in a if x.name in right] != [x.name for x in b if x.name in left]:
            out.append(f"{path} (order)")
        return
    out.append(path)


def _named(value: Any) -> bool:
    return isinstance(value, tuple) and all(dataclasses.is_dataclass(x) and hasattr(x, "name") for x in value)


def report(old: GatewayConfig, new: GatewayConfig) -> list[dict[str, str]]:
    return [{"key": key, "applies": classify(key)[0], "why": classify(key)[1]} for key in changes(old, new)]


def docs_table() -> str:
    rows = ["| keys | a reload applies them | notes |", "| --- | --- | --- |"]
    for prefix, (mode, why) in APPLIES.items():
        rows.append(f"| `{prefix or '(everything else)'}` | {mode} | {why} |")
    return "\n".join(rows)


if __name__ == "__main__":
    sys.stdout.write(docs_table() + "\n")
