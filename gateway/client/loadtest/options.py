"""The command's options, checked once: durations, caps, the sweep axis, and where traffic may go."""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

# Caps: a typo must not become an hour-long flood. Raise them deliberately with the flags.
MAX_DURATION_S = 3600.0
MAX_USERS = 10_000
MAX_REQUESTS = 1_000_000

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_SCALE = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class OptionError(ValueError):
    """A bad option: the message says which and why."""


def parse_duration(text: str, option: str) -> float:
    """`250ms`, `10s`, `2m`, `1h` or plain seconds."""
    match = _DURATION.match(text)
    if not match:
        raise OptionError(f"{option}: expected a duration like 30s, 2m or 500ms, got {text!r}")
    return float(match.group(1)) * _SCALE[match.group(2)]


@dataclass(frozen=True)
class Sweep:
    axis: str  # "users" or "rate"
    values: list[float]


def parse_sweep(text: str) -> Sweep:
    """`users=1,4,16,64` or `rate=0.5,1,2` (increasing)."""
    axis, _, values = text.partition("=")
    axis = axis.strip()
    if axis not in ("users", "rate") or not values:
        raise OptionError(f"--sweep: expected users=1,4,16 or rate=1,2,4, got {text!r}")
    try:
        parsed = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise OptionError(f"--sweep: {values!r} is not a list of numbers") from None
    if not parsed or any(v <= 0 for v in parsed) or parsed != sorted(set(parsed)):
        raise OptionError("--sweep: values must be positive and increasing")
    if axis == "users" and any(v != int(v) or v > MAX_USERS for v in parsed):
        raise OptionError(f"--sweep: users must be whole numbers up to {MAX_USERS}")
    return Sweep(axis, parsed)


def endpoint_url(url: str, chat: bool) -> str:
    """The request URL: a bare gateway URL (or one ending in /v1) gets the chat or completions path."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OptionError(f"URL: expected http(s)://host[:port][/path], got {url!r}")
    path = parts.path.rstrip("/")
    if path in ("", "/v1"):
        path = "/v1/chat/completions" if chat else "/v1/completions"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def require_loopback(url: str) -> None:
    """Refuse a target that is not this machine (every address the name resolves to must be loopback)."""
    host = urlsplit(url).hostname or ""
    try:
        addresses = {str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except socket.gaierror as exc:
        raise OptionError(f"URL: cannot resolve {host!r}: {exc.strerror}") from None
    remote = sorted(a for a in addresses if not ipaddress.ip_address(a.split("%")[0]).is_loopback)
    if remote:
        raise OptionError(f"refusing to load-test {host} ({', '.join(remote)}): not a loopback address. "
                          "Load tests can hurt a shared service; pass --allow-remote if you own the target.")


def check_caps(users: int, duration_s: float, max_requests: int, rate: float | None, points: int = 1) -> None:
    if users < 1 or users > MAX_USERS:
        raise OptionError(f"--users: between 1 and {MAX_USERS}")
    if duration_s <= 0 or duration_s * points > MAX_DURATION_S:
        raise OptionError(f"--duration: the whole run (all sweep points) must fit in {MAX_DURATION_S:g}s")
    if max_requests < 1 or max_requests > MAX_REQUESTS:
        raise OptionError(f"--max-requests: between 1 and {MAX_REQUESTS}")
    if rate is not None and rate <= 0:
        raise OptionError("--rate: must be positive")


def parse_headers(values: list[str]) -> dict[str, str]:
    """`--header "Name: value"` (repeatable) as a dict."""
    headers: dict[str, str] = {}
    for value in values:
        name, sep, content = value.partition(":")
        if not sep or not name.strip():
            raise OptionError(f"--header: expected 'Name: value', got {value!r}")
        headers[name.strip().lower()] = content.strip()
    return headers
