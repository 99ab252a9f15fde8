"""What an answer says about itself (`gateway.context.Answer`): its model, id and finish reasons, read
from a traced request's answer (or each streamed chunk) for the inference span's `gen_ai.response.*`
attributes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.context import Answer


def python_read_answer(answer: Answer, data: Any) -> None:
    """The model, id and finish reasons of an OpenAI-style answer (or one streamed chunk of it), parsed
    JSON. Compiled in `_genai.c` where setup.py built it (~80 bytecodes here on every traced request): that
    one reads orjson's plain dicts and lists and calls this one for anything else."""
    if not isinstance(data, dict):
        return
    model, ident, choices = data.get("model"), data.get("id"), data.get("choices")
    if isinstance(model, str):
        answer.model = model
    if isinstance(ident, str):
        answer.id = ident
    if isinstance(choices, list):
        for choice in choices:
            reason = choice.get("finish_reason") if isinstance(choice, dict) else None
            if isinstance(reason, str):
                answer.finish_reasons.append(reason)


read_answer: Callable[[Answer, Any], None] = python_read_answer
try:
    from gateway.telemetry._genai import answer_reader
except ImportError:  # built without a C compiler
    pass
else:
    read_answer = answer_reader(python_read_answer)
