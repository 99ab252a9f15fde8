"""Shared by the upstream tests: the balancers draw from `random`."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest


def seeded_random(seed: int) -> Callable[..., Any]:
    """An autouse fixture for a test module: `random` seeded with `seed` for each test (so a
    distribution test is repeatable), its state restored after. Use as `_seeded = seeded_random(N)`."""

    @pytest.fixture(autouse=True)
    def _seeded() -> Iterator[None]:
        state = random.getstate()
        random.seed(seed)
        yield
        random.setstate(state)

    return _seeded
