"""In-process checks of the pieces with subtle invariants: incremental text, and the batch KV layout."""

from __future__ import annotations

import pytest

from gpu_backend.detok import TextState


class ByteTokenizer:
    """Each id is one byte; decoding is lossy UTF-8, like a byte-level BPE tokenizer."""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


def _run(text: str, stop: list[str]) -> tuple[list[str], str, bool]:
    state = TextState(ByteTokenizer(), stop)
    data = list(text.encode())
    deltas, stopped = [], False
    for i in range(1, len(data) + 1):
        delta, stopped = state.update(data[:i], final=i == len(data))
        deltas.append(delta)
        if stopped:
            break
    return deltas, state.text, stopped


def test_multibyte_characters_are_never_split() -> None:
    deltas, text, _ = _run("héllo → wörld 日本", [])
    assert "".join(deltas) == text == "héllo → wörld 日本"
    assert all("\ufffd" not in d for d in deltas)


@pytest.mark.parametrize(("text", "stop", "expected"), [
    ("hello world. Next", ["."], "hello world"),
    ("abc END def", ["END", "xyz"], "abc "),
    ("abcENabcEND", ["END"], "abcENabc"),
    ("no stop here", ["zzz"], "no stop here"),
])
def test_stop_strings_cut_and_are_never_streamed(text: str, stop: list[str], expected: str) -> None:
    deltas, final, stopped = _run(text, stop)
    assert final == expected and "".join(deltas) == expected
    assert stopped == (expected != text)


def test_batch_kv_rows_join_and_leave() -> None:
    torch = pytest.importorskip("torch")
    from transformers import DynamicCache

    from gpu_backend.kv import BatchKV

    def prefilled(lengths: list[int], value: float) -> tuple[DynamicCache, torch.Tensor]:
        longest = max(lengths)
        mask = torch.zeros(len(lengths), longest, dtype=torch.long)
        for row, n in enumerate(lengths):
            mask[row, longest - n:] = 1
        cache = DynamicCache()
        kv = torch.full((len(lengths), 2, longest, 4), value)
        cache.update(kv, kv.clone(), 0)
        return cache, mask

    batch = BatchKV()
    batch.add(*prefilled([3, 5], 1.0))
    assert (batch.rows, batch.length) == (2, 5)
    batch.add(*prefilled([8], 2.0))  # longer: the existing rows get left padding
    assert (batch.rows, batch.length) == (3, 8)
    assert batch.mask.sum(dim=1).tolist() == [3, 5, 8] and batch.positions.tolist() == [3, 5, 8]
    mask, positions = batch.step_inputs()
    assert mask.shape == (3, 9) and positions.squeeze(1).tolist() == [3, 5, 8]
    batch.cache.layers[0].update(torch.zeros(3, 2, 1, 4), torch.zeros(3, 2, 1, 4))
    batch.keep([0, 1])  # the longest row leaves: all-padding columns are trimmed
    assert (batch.rows, batch.length) == (2, 6)
    assert batch.cache.layers[0].keys.shape == (2, 2, 6, 4)
    assert batch.mask.tolist() == [[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]]
