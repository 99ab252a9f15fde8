"""MessagePack request and response bodies: content negotiation, decoding to the JSON request model,
and encoding JSON answers for clients that ask for MessagePack.

A MessagePack request decodes to the same dict a JSON body parses to (then the same validation runs),
with one addition: binary (`bin`) values, allowed only as the `data` of media parts (`gateway.media`).
Everything else must be representable in JSON, because every later stage (plugins, cache, backend)
sees the request as canonical JSON. The JSON hot path pays one substring test (`is_msgpack_type`).
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import orjson

from gateway.errors import bad_request

MSGPACK_TYPES = frozenset({"application/msgpack", "application/x-msgpack", "application/vnd.msgpack"})
MSGPACK = "application/msgpack"
MAX_DEPTH = 64  # deeper request bodies are refused (JSON bodies nest a handful of levels)


def is_msgpack_type(content_type: str | None) -> bool:
    """Whether a Content-Type names MessagePack (parameters and case ignored)."""
    if not content_type or "json" in content_type:  # the JSON path stops here
        return False
    return content_type.split(";", 1)[0].strip().lower() in MSGPACK_TYPES


def accepts_msgpack(accept: str | None) -> bool:
    """Whether an Accept header prefers MessagePack over JSON (q-values honoured, ties to MessagePack)."""
    if not accept or "msgpack" not in accept.lower():
        return False
    best_msgpack = best_json = 0.0
    for item in accept.split(","):
        media, _, params = item.partition(";")
        media = media.strip().lower()
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media in MSGPACK_TYPES:
            best_msgpack = max(best_msgpack, q)
        elif media in ("application/json", "application/*", "*/*"):
            best_json = max(best_json, q)
    return best_msgpack > 0 and best_msgpack >= best_json


def decode_request(raw: bytes) -> Any:
    """A MessagePack request body as Python values; malformed input is a 400, never a 500."""
    if not raw:
        raise bad_request("request body is empty; expected a MessagePack map", code="invalid_msgpack")
    try:
        return msgpack.unpackb(raw, raw=False, strict_map_key=True, object_pairs_hook=_unique_keys)
    except _RepeatedKey as exc:
        raise bad_request(f"request body repeats the key {exc.key!r} in one map", code="duplicate_key") from None
    except msgpack.ExtraData:
        raise bad_request("request body is not valid MessagePack: extra bytes after the request map",
                          code="invalid_msgpack") from None
    except (ValueError, TypeError) as exc:  # truncated, reserved bytes, bad UTF-8, non-string keys, stack
        detail = str(exc) or type(exc).__name__
        raise bad_request(f"request body is not valid MessagePack: {detail}", code="invalid_msgpack") from None


class _RepeatedKey(ValueError):
    def __init__(self, key: object) -> None:
        self.key = str(key)[:64]


def _unique_keys(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    """A map as a dict; a key twice is refused, as in a JSON body (`gateway.ingress.jsonkeys`): the gateway
    would judge the last value while a plugin or backend reading the bytes could take the first."""
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[Any] = set()
        for key, _ in pairs:
            if key in seen:
                raise _RepeatedKey(key)
            seen.add(key)
    return out


def check_json_compatible(value: Any, where: str = "", depth: int = 0) -> None:
    """400 naming the field when a decoded MessagePack value has no JSON equivalent: a binary value
    outside a media part, a non-finite float, an extension type, or a map with non-string keys.
    Run after `gateway.media` has turned media parts' bytes into their JSON form."""
    if isinstance(value, str | bool | int | None):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise bad_request(f"'{where}' must be a finite number", param=where or None, code="invalid_value")
        return
    if depth >= MAX_DEPTH:
        raise bad_request(f"request body nests deeper than {MAX_DEPTH} levels", param=where or None,
                          code="invalid_msgpack")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise bad_request(f"map keys must be strings (in '{where or 'the request'}')",
                                  param=where or None, code="invalid_type")
            check_json_compatible(item, f"{where}.{key}" if where else key, depth + 1)
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            check_json_compatible(item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, bytes):
        raise bad_request(f"'{where}' is binary; only the 'data' of an image or input_audio part may be",
                          param=where or None, code="invalid_type")
    raise bad_request(f"'{where}' has a MessagePack type with no JSON equivalent ({type(value).__name__})",
                      param=where or None, code="invalid_type")


def encode_response(json_body: bytes) -> bytes | None:
    """A JSON answer re-encoded as MessagePack; None when the body is not JSON (sent as it is)."""
    try:
        packed: bytes = msgpack.packb(orjson.loads(json_body), use_bin_type=True)
        return packed
    except (orjson.JSONDecodeError, ValueError, TypeError, OverflowError):
        return None
