"""The compiled GenAI histogram tally (`_genai.c`): see `metrics.python_tally`."""

def tally(bounds: tuple[list[float], ...], counts: list[list[int]], sums: list[float], elapsed: float,
          input_tokens: int | None, output_tokens: int, first_s: float | None, /) -> bool: ...
