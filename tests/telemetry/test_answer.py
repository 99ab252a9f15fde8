"""What an answer says about itself (`gateway.telemetry.answer`): the compiled reader and the Python one
agree on random answers, orjson's plain ones and the subclasses and odd values the compiled one hands back."""

from __future__ import annotations

import random
import shutil
from typing import Any

from gateway.context import Answer
from gateway.telemetry import answer


class _Dict(dict[str, Any]):
    def get(self, key: str, default: Any = None) -> Any:  # a subclass may answer otherwise
        return "sub-" + key if key in ("model", "finish_reason") else super().get(key, default)


class _List(list[Any]):
    pass


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 2 else 4)
    if kind == 0:
        return rng.choice(["m", "", "stop", "modèle"])
    if kind == 1:
        return rng.choice([None, 1, 2.5, True])
    if kind == 2:
        return rng.choice(["length", "stop", None, 3])
    if kind == 3:
        return []
    if kind == 4:
        return {"finish_reason": _value(rng, depth + 1), "index": 0}
    items = [_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return items if kind == 5 else _List(items)


def _data(rng: random.Random) -> Any:
    data = {key: _value(rng) for key in rng.sample(["model", "id", "choices", "usage"], rng.randrange(5))}
    if rng.random() < 0.5:
        data["choices"] = [rng.choice([{"finish_reason": _value(rng)}, _Dict(finish_reason="x"), _value(rng)])
                           for _ in range(rng.randrange(3))]
    return rng.choice([data, data, data, _Dict(data), _List([data]), "text", None])


def test_compiled_and_python_readers_agree() -> None:
    if shutil.which("cc") or shutil.which("gcc"):
        assert answer.read_answer is not answer.python_read_answer, "setup.py builds gateway/telemetry/_genai.c"
    rng = random.Random(5)
    for _ in range(3000):
        data = _data(rng)
        ours, theirs = Answer(finish_reasons=["earlier"]), Answer(finish_reasons=["earlier"])
        answer.read_answer(ours, data)
        answer.python_read_answer(theirs, data)
        assert ours == theirs, data


def test_reads_an_openai_answer() -> None:
    found = Answer()
    answer.read_answer(found, {"id": "cmpl-1", "model": "tiny", "choices": [{"finish_reason": "length"},
                                                                            {"finish_reason": None}]})
    assert (found.model, found.id, found.finish_reasons) == ("tiny", "cmpl-1", ["length"])
