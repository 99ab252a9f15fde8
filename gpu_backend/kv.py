"""The running batch's KV cache: one right-aligned (left-padded) row per sequence, grown in place.

Every row ends at the same column, so a decode step appends one column for the whole batch. Rows join
(after their own prefill) and leave between steps; columns that are padding in every row are trimmed.
Buffers have spare capacity so a decode step writes in place instead of re-concatenating the cache,
which on a CPU would copy the whole cache on every token.

`SlotLayer` subclasses transformers' cache internals (`DynamicLayer`, `DynamicCache.layers`), which are
not a public API: pyproject.toml bounds the transformers version, and `check_cache_internals` (run when
an engine is built) refuses to serve on a release whose internals differ from what this module relies on.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
import transformers
from transformers import DynamicCache
from transformers.cache_utils import Cache, DynamicLayer


class SlotLayer(DynamicLayer):
    """A DynamicLayer whose keys/values live in a buffer with spare capacity along the sequence axis."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int) -> None:
        super().__init__()
        self.buf_k, self.buf_v, self.length = keys, values, length
        self.device = keys.device
        self.is_initialized = True
        self._sync()

    def _sync(self) -> None:
        self.keys = self.buf_k[:, :, : self.length]
        self.values = self.buf_v[:, :, : self.length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        n = key_states.shape[-2]
        if self.length + n > self.buf_k.shape[2]:
            self.buf_k = _grow(self.buf_k, self.length + n)
            self.buf_v = _grow(self.buf_v, self.length + n)
        self.buf_k[:, :, self.length : self.length + n] = key_states
        self.buf_v[:, :, self.length : self.length + n] = value_states
        self.length += n
        self._sync()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length


def _grow(buf: torch.Tensor, need: int) -> torch.Tensor:
    cap = max(need, buf.shape[2] * 2, 16)
    out = buf.new_zeros(buf.shape[0], buf.shape[1], cap, buf.shape[3])
    out[:, :, : buf.shape[2]] = buf
    return out


class BatchKV:
    """KV cache + attention mask + next positions for the rows of the running batch."""

    def __init__(self) -> None:
        self.cache: DynamicCache | None = None
        self.mask: torch.Tensor | None = None  # [rows, length] 1 = real token
        self.positions: torch.Tensor | None = None  # [rows] position of each row's next token

    @property
    def rows(self) -> int:
        return 0 if self.mask is None else self.mask.shape[0]

    @property
    def length(self) -> int:
        return 0 if self.mask is None else self.mask.shape[1]

    def tokens(self) -> int:
        """Allocated KV slots (rows x columns, padding included): what memory the cache holds."""
        return self.rows * self.length

    def add(self, cache: DynamicCache, mask: torch.Tensor) -> None:
        """Append rows prefilled together (their own left-padded cache and 2-D mask) to the batch."""
        new_k = [layer.keys for layer in cache.layers]
        new_v = [layer.values for layer in cache.layers]
        new_len = mask.shape[1]
        if self.cache is None or self.rows == 0:
            length, old_rows = new_len, 0
        else:
            length, old_rows = max(self.length, new_len), self.rows
        rows = old_rows + mask.shape[0]
        layers = []
        for i, (k, v) in enumerate(zip(new_k, new_v, strict=True)):
            cap = length + 32
            bk = k.new_zeros(rows, k.shape[1], cap, k.shape[3])
            bv = v.new_zeros(rows, v.shape[1], cap, v.shape[3])
            if old_rows:
                old = self.cache.layers[i]
                bk[:old_rows, :, length - self.length : length] = old.keys
                bv[:old_rows, :, length - self.length : length] = old.values
            bk[old_rows:, :, length - new_len : length] = k
            bv[old_rows:, :, length - new_len : length] = v
            layers.append(SlotLayer(bk, bv, length))
        full_mask = mask.new_zeros(rows, length)
        if old_rows:
            full_mask[:old_rows, length - self.length :] = self.mask
        full_mask[old_rows:, length - new_len :] = mask
        new_pos = mask.sum(dim=1)
        self.positions = new_pos if not old_rows else torch.cat([self.positions, new_pos])
        self.mask = full_mask
        self.cache = _cache_of(layers)

    def keep(self, indices: list[int]) -> None:
        """Keep only these rows (in this order), then trim columns that are padding in every row."""
        if not indices:
            self.cache, self.mask, self.positions = None, None, None
            return
        idx = torch.tensor(indices, device=self.mask.device)
        self.mask = self.mask.index_select(0, idx)
        self.positions = self.positions.index_select(0, idx)
        real = self.mask.any(dim=0).nonzero()
        start = int(real[0]) if real.numel() else 0
        layers = []
        for layer in self.cache.layers:
            k = layer.buf_k.index_select(0, idx)[:, :, start:]
            v = layer.buf_v.index_select(0, idx)[:, :, start:]
            layers.append(SlotLayer(k.contiguous(), v.contiguous(), layer.length - start))
        self.mask = self.mask[:, start:]
        self.cache = _cache_of(layers)

    def step_inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The attention mask and position ids for one decode step (one new token per row)."""
        ones = self.mask.new_ones(self.rows, 1)
        self.mask = torch.cat([self.mask, ones], dim=1)
        pos = self.positions.unsqueeze(1)
        self.positions = self.positions + 1
        return self.mask, pos


def cache_with_past(pasts: list[tuple[list[torch.Tensor], int]], width: int, room: int) -> DynamicCache:
    """A cache to prefill `room` new columns per row on top of each row's past KV (a prefix-cache hit).

    Row i's past is the first n_i positions of its blocks (each [layers, 2, kv_heads, block, head_dim]; n_i
    0 for none). It ends at column `width`, left-padded like the batch; the buffers have exactly `room` free
    columns after it, so the prefill writes in place. The blocks are copied once, straight into the buffers
    (joining them first would copy a long prefix twice, a visible share of a cached request's TTFT).
    """
    ref = next(blocks[0] for blocks, n in pasts if n)
    layers, _, heads, _, dim = ref.shape
    buf = ref.new_empty(layers, 2, len(pasts), heads, width + room, dim)
    for row, (blocks, n) in enumerate(pasts):
        # Padding must hold finite values: a masked position still takes part in the value product.
        buf[:, :, row, :, : width - n].zero_()
        column = width - n
        for block in blocks:
            take = min(block.shape[3], width - column)
            if take <= 0:
                break
            buf[:, :, row, :, column: column + take] = block[:, :, :, :take]
            column += take
    return _cache_of([SlotLayer(buf[i, 0], buf[i, 1], width) for i in range(layers)])


def row_states(cache: DynamicCache, row: int, start: int, end: int) -> torch.Tensor:
    """Columns start..end-1 of one row, every layer: [layers, 2, kv_heads, end - start, head_dim]."""
    return torch.stack([torch.stack((layer.keys[row, :, start:end], layer.values[row, :, start:end]))
                        for layer in cache.layers])


def _cache_of(layers: list[SlotLayer]) -> DynamicCache:
    cache = DynamicCache()
    cache.layers = list(layers)
    return cache


class CacheInternalsError(RuntimeError):
    """The installed transformers' cache internals are not those `SlotLayer` was written against."""


# (class, method, the leading parameters it must take in this order)
_SIGNATURES: tuple[tuple[type, str, tuple[str, ...]], ...] = (
    (DynamicLayer, "update", ("self", "key_states", "value_states")),
    (DynamicLayer, "get_seq_length", ("self",)),
    (Cache, "update", ("self", "key_states", "value_states", "layer_idx")),
)


def check_cache_internals() -> None:
    """Raise `CacheInternalsError` naming what differs unless transformers' cache internals are what
    `SlotLayer` and `BatchKV` rely on: the signatures they override or call, and, on two tiny tensors,
    that a `DynamicCache` holding our layers hands `update` to them and reads their length back.

    A silent difference would not fail loudly: the model would attend over a wrong cache.
    """
    problems = []
    for cls, name, params in _SIGNATURES:
        found = _leading(getattr(cls, name, None), len(params))
        if found != params:
            problems.append(f"{cls.__name__}.{name} takes ({', '.join(found)}...), expected ({', '.join(params)}...)")
    if not problems:
        problems = _probe()
    if problems:
        raise CacheInternalsError(
            f"transformers {transformers.__version__} is not supported by gpu_backend.kv (its KV cache "
            f"subclasses transformers' cache internals): {'; '.join(problems)}. Install the version "
            "pyproject.toml pins.")


def _leading(fn: Callable[..., object] | None, n: int) -> tuple[str, ...]:
    if fn is None:
        return ()
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return ()
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return tuple(names[:n])


def _probe() -> list[str]:
    """Exercise the internals on tensors of a few elements; return what behaved differently."""
    try:
        prefill = DynamicCache()
        states = torch.ones(1, 1, 2, 2)
        prefill.update(states, states.clone(), 0)
        kept = prefill.layers[0].keys
        if kept is None or tuple(kept.shape) != (1, 1, 2, 2):
            return ["DynamicCache.update does not keep the prefill's keys in layers[0].keys"]
        layer = SlotLayer(torch.zeros(1, 1, 4, 2), torch.zeros(1, 1, 4, 2), 2)
        cache = _cache_of([layer])
        # Two new columns on top of a past, as a prefill after a prefix-cache hit does (a decode step adds one).
        keys, _ = cache.update(states, states.clone(), 0)
        if cache.layers[0] is not layer or layer.length != 4 or tuple(keys.shape) != (1, 1, 4, 2):
            return ["DynamicCache.update does not hand the new states to the layers it holds"]
        if cache.get_seq_length(0) != 4:
            return ["DynamicCache.get_seq_length does not read the layer's length"]
    except Exception as exc:  # any failure here means the internals changed
        return [f"the cache probe failed: {type(exc).__name__}: {exc}"]
    return []
