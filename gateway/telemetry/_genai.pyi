"""The compiled GenAI helpers (`_genai.c`): see `metrics.python_tally` and `answer.python_read_answer`."""

from collections.abc import Callable
from typing import Any

from gateway.context import Answer

def tally(bounds: tuple[list[float], ...], counts: list[list[int]], sums: list[float], elapsed: float,
          input_tokens: int | None, output_tokens: int, first_s: float | None, /) -> bool: ...
def answer_reader(fallback: Callable[[Answer, Any], None], /) -> Callable[[Answer, Any], None]: ...
