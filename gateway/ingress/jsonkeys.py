"""Refuse request bodies with a repeated object key.

JSON parsers disagree on `{"model": "a", "model": "b"}`: orjson keeps the last, others the first.
The gateway authorizes, limits and caches by what it parsed but forwards the raw bytes, so a body
read one way here and another way by the backend must not pass. The check is cheap for the common
case: every member of an object is written with one structural `:`, and a duplicate is lost when
parsed, so re-serialising the parsed body (orjson writes `:` only between keys and values and
inside strings, never escaped) gives fewer colons than the raw body exactly when a key repeated.
Only bodies where a `:` might hide as `\\u003a`, or where the counts differ, take the slow exact
parse that names the key.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from gateway.errors import bad_request


class _Repeated(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def reject_duplicate_keys(raw: bytes, parsed: Any) -> None:
    """400 when `raw` (already parsed into `parsed`) repeats a key in one of its objects."""
    if b"\\" not in raw or b"\\u003" not in raw:  # `\u003a` is a colon the raw count would miss
        try:
            if raw.count(b":") == orjson.dumps(parsed).count(b":"):
                return
        except orjson.JSONEncodeError:
            pass
    key = _repeated_key(raw)
    if key is not None:
        raise bad_request(f"request body repeats the key {key!r} in one object", code="duplicate_key")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise _Repeated(key)
        found[key] = value
    return found


def _repeated_key(raw: bytes) -> str | None:
    try:
        # Numbers kept as text: nothing to convert, and no int-size limit to trip over.
        json.loads(raw, object_pairs_hook=_pairs, parse_int=str, parse_float=str)
    except _Repeated as exc:
        return exc.key[:64]
    except (RecursionError, ValueError):
        # orjson accepted the body and this parser does not: refuse rather than guess.
        raise bad_request("request body could not be checked for repeated keys", code="invalid_json") from None
    return None
