"""In-process checks of the pieces with subtle invariants: incremental text, and the batch KV layout."""

from __future__ import annotations

from typing import Any

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


def test_cache_internals_check_passes_on_the_pinned_transformers() -> None:
    pytest.importorskip("torch")
    from gpu_backend import kv

    # The installed version is the one pyproject.toml pins: every signature matches and the probe on
    # tiny tensors finds nothing, so the check passes (the next test shows it refusing a changed one).
    assert [kv._leading(getattr(cls, name), len(params)) for cls, name, params in kv._SIGNATURES] == \
        [params for _, _, params in kv._SIGNATURES]
    assert kv._probe() == []
    assert kv.check_cache_internals() is None


@pytest.mark.parametrize("change", ["signature", "behaviour"])
def test_cache_internals_check_refuses_a_changed_transformers(monkeypatch: pytest.MonkeyPatch, change: str) -> None:
    pytest.importorskip("torch")
    from transformers.cache_utils import Cache, DynamicLayer

    from gpu_backend import kv

    if change == "signature":  # a release that renamed update's arguments
        monkeypatch.setattr(DynamicLayer, "update", lambda self, states, *args, **kwargs: (states, states))
        expected = "DynamicLayer.update takes (self, states...)"
    else:  # a release whose Cache keeps new states elsewhere than in the layers it holds
        original = Cache.update

        def update(self: Cache, key_states: Any, value_states: Any, layer_idx: int, *args: Any, **kwargs: Any) -> Any:
            if layer_idx < len(self.layers) and isinstance(self.layers[layer_idx], kv.SlotLayer):
                return key_states, value_states
            return original(self, key_states, value_states, layer_idx, *args, **kwargs)

        monkeypatch.setattr(Cache, "update", update)
        expected = "does not hand the new states to the layers it holds"
    with pytest.raises(kv.CacheInternalsError) as err:
        kv.check_cache_internals()
    assert expected in str(err.value) and "pyproject.toml" in str(err.value)


def test_prefix_cache_matches_whole_blocks_and_evicts_leaves_first() -> None:
    torch = pytest.importorskip("torch")
    from gpu_backend.prefix_cache import PrefixCache

    def kv_of(tokens: list[int]):  # [layers=1, 2, heads=1, positions, dim=1]: each position's token id
        return lambda a, b: torch.tensor(tokens[a:b], dtype=torch.float32).view(1, 1, 1, -1, 1).repeat(1, 2, 1, 1, 1)

    block_bytes = 2 * 4 * 4  # keys and values of 4 positions, one float each
    cache = PrefixCache(capacity_bytes=5 * block_bytes, block_tokens=4)
    a = list(range(10))  # two full blocks, and a remainder that is never cached
    cache.store(a, kv_of(a))
    assert len(cache) == 2 and cache.bytes == 2 * block_bytes
    hit = cache.match([*a[:8], 99])  # the last position is never covered: both blocks
    assert len(hit) == 2 and torch.cat([b.kv for b in hit], dim=3)[0, 0, 0, :, 0].tolist() == list(range(8))
    assert len(cache.match(a[:8])) == 1  # an 8-token prompt may reuse only its first block
    assert cache.match([0, 1, 2, 7, 4, 5, 6, 7, 8]) == []  # a block differs: nothing after it matches either
    b = [0, 1, 2, 3, 50, 51, 52, 53, 54, 55, 56, 57, 58]  # shares a's first block
    cache.store(b, kv_of(b))
    assert len(cache) == 4 and len(cache.match(b)) == 3
    c = list(range(100, 113))  # three new blocks: over the bound by two
    cache.store(c, kv_of(c))
    assert cache.bytes == 5 * block_bytes
    # a's second block was the least recently used leaf; b's deepest came next. The shared first block
    # stays: it was touched after every block under it.
    assert len(cache.match([*a, 0])) == 1 and len(cache.match([*b, 0])) == 2 and len(cache.match([*c, 0])) == 3


def test_prefix_cache_of_zero_bytes_keeps_nothing() -> None:
    torch = pytest.importorskip("torch")
    from gpu_backend.prefix_cache import PrefixCache

    cache = PrefixCache(capacity_bytes=0, block_tokens=4)
    cache.store(list(range(12)), lambda a, b: torch.zeros(1, 2, 1, b - a, 1))
    assert len(cache) == 0 and cache.match(list(range(12))) == []


def test_cache_with_past_right_aligns_each_rows_past() -> None:
    torch = pytest.importorskip("torch")
    from gpu_backend.kv import cache_with_past, row_states

    past = torch.arange(3.0).view(1, 1, 1, 3, 1).repeat(2, 2, 1, 1, 1)  # 2 layers, 3 positions
    blocks = [past[:, :, :, :2], past[:, :, :, 2:]]  # blocks of 2 positions: the past spans both
    cache = cache_with_past([(blocks, 3), ([], 0), (blocks, 1)], width=3, room=2)
    assert cache.get_seq_length() == 3
    new = torch.full((3, 1, 2, 1), 9.0)
    for layer in range(2):
        cache.update(new, new.clone(), layer)
    assert cache.layers[1].keys[:, 0, :, 0].tolist() == [[0, 1, 2, 9, 9], [0, 0, 0, 9, 9], [0, 0, 0, 9, 9]]
    assert row_states(cache, 0, 1, 4)[:, 1, 0, :, 0].tolist() == [[1, 2, 9], [1, 2, 9]]
