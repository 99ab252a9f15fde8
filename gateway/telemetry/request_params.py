"""The generation parameters a request asked for, as the inference span records them
(`gen_ai.request.max_tokens`, `.temperature`, `.top_p`, `.frequency_penalty`, `.seed`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["NONE", "PARAMS", "python_request_params", "request_params"]

# The body's keys, in the order `request_params` returns their values, and each one's type in the
# semantic conventions. An attribute key keeps one value type (`otlp_wire`'s cache needs it).
PARAMS: tuple[tuple[str, type], ...] = (("max_tokens", int), ("temperature", float), ("top_p", float),
                                        ("frequency_penalty", float), ("seed", int))
NONE = (None,) * len(PARAMS)  # a request without a JSON object
_INT64 = (-(1 << 63), 1 << 63)


def python_request_params(body: Any) -> tuple[int | float | None, ...]:
    """The values of `PARAMS` in `body` (the request's parsed JSON object, read with `body.get`), each
    as its convention's type: an int temperature as a float, a whole float seed as an int. None where
    absent, of another type (a bool, a string), a fraction where an int is meant, or an int beyond 64
    bits (OTLP has none: left out rather than logged on every such request). Compiled in `_genai.c`
    (`request_params`) where setup.py built it (~50 bytecodes here for a body of three keys)."""
    found: list[int | float | None] = []
    for key, kind in PARAMS:
        value = body.get(key)
        if type(value) is float:
            if kind is int:
                value = int(value) if value.is_integer() and _INT64[0] <= value < _INT64[1] else None
        elif type(value) is int:
            value = (float(value) if kind is float else value) if _INT64[0] <= value < _INT64[1] else None
        else:
            value = None
        found.append(value)
    return tuple(found)


request_params: Callable[[Any], tuple[int | float | None, ...]] = python_request_params
try:
    from gateway.telemetry._genai import request_params
except ImportError:  # built without a C compiler
    pass
