"""A request's generation parameters as the inference span records them (`gateway.telemetry.request_params`):
each as its semantic convention's type, values OTLP cannot carry left out, and the compiled reader and the
Python one agree on random bodies."""

from __future__ import annotations

import math
import random
import shutil
from typing import Any

import pytest

from gateway.telemetry import request_params as rp

_KEYS = [key for key, _ in rp.PARAMS]
_VALUES: list[Any] = [0, 1, 7, -3, (1 << 63) - 1, -(1 << 63), 1 << 63, -(1 << 63) - 1, 1 << 100, 0.0, -0.0, 0.85,
                      2.0, -2.0, 1e19, 9.2e18, -9.223372036854775808e18, 9.223372036854775808e18, 1e300,
                      math.inf, -math.inf, math.nan, True, False, None, "0.5", [1], {"x": 1}]


class _Body(dict[str, Any]):
    def get(self, key: str, default: Any = None) -> Any:  # a subclass may answer otherwise
        return 0.25 if key == "top_p" else super().get(key, default)


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return len(a) == len(b) and all(type(x) is type(y) and (x == y or x != x and y != y) for x, y in zip(a, b, strict=True))


def test_values_take_their_conventions_types() -> None:
    body = {"model": "m", "max_tokens": 64.0, "temperature": 0, "top_p": 0.85, "frequency_penalty": True,
            "seed": 1 << 64, "messages": []}
    found = rp.request_params(body)
    assert _same(found, (64, 0.0, 0.85, None, None))  # whole float -> int; int -> float; a bool is none
    assert _same(rp.request_params({"max_tokens": 2.5, "seed": -(1 << 63)}), (None, None, None, None, -(1 << 63)))
    assert rp.request_params({}) == rp.NONE


def test_compiled_and_python_readers_agree() -> None:
    if shutil.which("cc") or shutil.which("gcc"):
        assert rp.request_params is not rp.python_request_params, "setup.py builds gateway/telemetry/_genai.c"
    rng = random.Random(12)
    for _ in range(5000):
        body = {key: rng.choice(_VALUES) for key in rng.sample(_KEYS + ["model", "stream"], rng.randrange(8))}
        if rng.random() < 0.1:
            body = _Body(body)
        compiled, python = rp.request_params(body), rp.python_request_params(body)
        assert _same(compiled, python), (body, compiled, python)
    for bad in (None, [("seed", 1)], "seed"):  # not a mapping: both raise alike
        with pytest.raises(AttributeError):
            rp.python_request_params(bad)
        with pytest.raises(AttributeError):
            rp.request_params(bad)
