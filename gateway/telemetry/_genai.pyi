"""The compiled GenAI helpers (`_genai.c`): see `metrics.python_tally`, `answer.python_read_answer` and
`request_params.python_request_params`."""

from collections.abc import Callable
from typing import Any

from gateway.context import Answer

def tally(bounds: tuple[list[float], ...], counts: list[list[int]], sums: list[float], elapsed: float,
          input_tokens: int | None, output_tokens: int, first_s: float | None, /) -> bool: ...
def answer_reader(fallback: Callable[[Answer, Any], None], /) -> Callable[[Answer, Any], None]: ...
def request_params(body: Any, /) -> tuple[int | float | None, ...]: ...
