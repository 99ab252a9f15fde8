"""Incremental detokenization with stop strings, done on the engine thread.

Each step decodes the sequence's generated ids and emits only text that can no longer change: a trailing
incomplete UTF-8 character (shown as U+FFFD) and a trailing prefix of a stop string are held back until
the next token settles them. Streaming deltas therefore concatenate to exactly the final text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class TextState:
    """The decoded text of one sequence and how much of it was already emitted."""

    def __init__(self, tokenizer: Any, stop: list[str]) -> None:
        self.decode = fast_decoder(tokenizer)
        self.stop = [s for s in stop if s]
        self.text = ""
        self.sent = 0  # characters of `text` already emitted

    def update(self, ids: list[int], final: bool) -> tuple[str, bool]:
        """Decode `ids`; return (new text to emit, whether a stop string ended the sequence)."""
        text = self.decode(ids)
        stopped = False
        if self.stop:
            cut = _first_stop(text, self.stop, max(0, len(self.text) - max(map(len, self.stop))))
            if cut is not None:
                text, stopped, final = text[:cut], True, True
        self.text = text
        safe = len(text) if final else _settled(text, self.stop)
        if safe <= self.sent:
            return "", stopped
        delta = text[self.sent : safe]
        self.sent = safe
        return delta, stopped


def fast_decoder(tokenizer: Any) -> Callable[[list[int]], str]:
    """`ids -> text` without special tokens. Calls the Rust tokenizer directly when that gives the same
    result as `tokenizer.decode` (no clean-up pass): the Python wrapper costs more than the decoding itself,
    and this runs for every sequence on every decode step."""
    backend = getattr(tokenizer, "_tokenizer", None)
    if backend is not None and not getattr(tokenizer, "clean_up_tokenization_spaces", False):
        return lambda ids: backend.decode(ids, skip_special_tokens=True)
    return lambda ids: tokenizer.decode(ids, skip_special_tokens=True)


def _first_stop(text: str, stops: list[str], start: int) -> int | None:
    hits = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return min(hits) if hits else None


def _settled(text: str, stops: list[str]) -> int:
    """Length of the prefix of `text` that further tokens cannot change or cut."""
    safe = len(text.rstrip("\ufffd"))
    hold = 0
    for s in stops:
        for k in range(min(len(s) - 1, safe), hold, -1):
            if text[:safe].endswith(s[:k]):
                hold = k
                break
    return safe - hold
