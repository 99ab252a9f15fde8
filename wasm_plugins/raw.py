"""Fast calls across the wasm boundary, on wasmtime's "unchecked" C API.

wasmtime-py's `Func.__call__` and its host-function trampoline look up types and box every value
in a `Val` on each call (several microseconds). The proxy-wasm ABI only moves i32/i64 scalars, so we
call through `wasmtime_func_call_unchecked` with one preallocated raw-value buffer per function, and
define host functions with `wasmtime_func_new_unchecked` and our own trampoline.

Safety: the unchecked API trusts the caller about types. Exports are called only after their
signatures were checked against the ABI (`wasm_plugins.abi.CALLBACKS`); host functions are created
with the type the module declared and the trampoline reads and writes each slot by that type.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from ctypes import byref
from typing import Any

import wasmtime
from wasmtime import _bindings as _raw_bindings
from wasmtime import _ffi as ffi

_RAW = ffi.wasmtime_val_raw_t
_TRAP_PTR = ctypes.POINTER(ffi.wasm_trap_t)
_U32, _U64 = ctypes.c_uint32, ctypes.c_uint64
# The raw ctypes entry points: the generated Python wrappers around them add a call per use.
_call_unchecked = _raw_bindings._wasmtime_func_call_unchecked
_mem_size = _raw_bindings._wasmtime_memory_data_size
_mem_data = _raw_bindings._wasmtime_memory_data


class HostTrap(Exception):
    """Raised by a host function to trap the calling plugin; `reason` names the failure for metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class WasmCallError(Exception):
    """A call into the plugin trapped. `reason`: trap | timeout | fuel | stack | memory | host reasons."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _kinds(types: list[wasmtime.ValType]) -> tuple[str, ...]:
    return tuple(str(t) for t in types)


# --- host functions ------------------------------------------------------------------------------

class _HostEntry:
    __slots__ = ("fn", "params", "result", "owner")

    def __init__(self, fn: Callable[..., Any], params: tuple[str, ...], result: str | None, owner: Any) -> None:
        self.fn = fn
        self.params = params
        self.result = result
        self.owner = owner


_HOST: dict[int, _HostEntry] = {}
_next_id = 1


@ffi.wasmtime_func_unchecked_callback_t
def _trampoline(env: int, caller: Any, slots: Any, nslots: int) -> int:
    entry = _HOST[env]
    try:
        mem = entry.owner.mem
        if mem is not None:
            mem.refresh()  # wasm may have grown memory since the last host call
        args = []
        for i, kind in enumerate(entry.params):
            if kind == "i32":
                # proxy-wasm i32s are pointers, sizes and ids: unsigned (Python sees them signed).
                args.append(slots[i].i32 & 0xFFFFFFFF)
            elif kind == "i64":
                args.append(slots[i].i64)
            elif kind == "f64":
                args.append(slots[i].f64)
            else:
                args.append(slots[i].f32)
        result = entry.fn(*args)
        kind = entry.result
        if kind == "i32":
            slots[0].i32 = result
        elif kind == "i64":
            slots[0].i64 = result
        elif kind == "f64":
            slots[0].f64 = result
        elif kind == "f32":
            slots[0].f32 = result
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure must become a trap, never unwind into C
        entry.owner.pending_error = exc
        msg = f"host: {exc}".encode()
        trap = ffi.wasmtime_trap_new(ctypes.create_string_buffer(msg), len(msg))
        return ctypes.cast(trap, ctypes.c_void_p).value or 0


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _finalize(env: int) -> None:
    _HOST.pop(env or 0, None)


def host_func(store: wasmtime.Store, ty: wasmtime.FuncType, fn: Callable[..., Any], owner: Any) -> wasmtime.Func:
    """A host function of type `ty` calling `fn(*unsigned_i32_or_i64_args)`; errors trap and are
    recorded on `owner.pending_error`."""
    global _next_id
    results = _kinds(ty.results)
    if len(results) > 1:
        raise ValueError("multi-value host functions are not part of the ABI")
    env = _next_id
    _next_id += 1
    _HOST[env] = _HostEntry(fn, _kinds(ty.params), results[0] if results else None, owner)
    raw = ffi.wasmtime_func_t()
    ffi.wasmtime_func_new_unchecked(store._context(), ty.ptr(), _trampoline, env, _finalize, byref(raw))
    return wasmtime.Func._from_raw(raw)


# --- calls into the plugin -----------------------------------------------------------------------

class Callee:
    """One exported function, callable with ints; returns its single result or None."""

    __slots__ = ("cx", "func_ref", "func", "nparams", "result", "buf", "nbuf", "owner")

    def __init__(self, store: wasmtime.Store, func: wasmtime.Func, owner: Any = None) -> None:
        ty = func.type(store)
        self.cx = store._context()
        self.func = func._func
        self.func_ref = byref(self.func)
        self.nparams = len(ty.params)
        results = _kinds(ty.results)
        self.result = results[0] if results else None
        self.nbuf = max(1, self.nparams, len(results))
        self.buf = (_RAW * self.nbuf)()
        self.owner = owner

    def __call__(self, *args: int) -> int | None:
        buf = self.buf
        for i in range(self.nparams):
            buf[i].i32 = args[i] if i < len(args) else 0
        trap = _TRAP_PTR()
        err = _call_unchecked(self.cx, self.func_ref, buf, self.nbuf, byref(trap))
        if err:
            raise wasmtime.WasmtimeError._from_ptr(err)
        if trap:
            raise wasmtime.Trap._from_ptr(trap)
        if self.owner is not None and self.owner.mem is not None:
            self.owner.mem.refresh()  # a nested call (the allocator) may have grown memory
        if self.result == "i32":
            return buf[0].i32 & 0xFFFFFFFF
        if self.result == "i64":
            return buf[0].i64
        return None


def set_fuel(cx: Any, fuel: int) -> None:
    err = ffi.wasmtime_context_set_fuel(cx, fuel)
    if err:
        raise wasmtime.WasmtimeError._from_ptr(err)


def get_fuel(cx: Any) -> int:
    left = ctypes.c_uint64(0)
    err = ffi.wasmtime_context_get_fuel(cx, byref(left))
    if err:
        raise wasmtime.WasmtimeError._from_ptr(err)
    return left.value


def set_deadline(cx: Any, ticks: int) -> None:
    ffi.wasmtime_context_set_epoch_deadline(cx, ticks)


class RawMemory:
    """Bounds-checked reads and writes of a plugin's linear memory.

    The engine is configured so memories never move (`memory_may_move = False`), so the base
    address is fixed; the size is re-read on every entry into the host (`refresh`)."""

    __slots__ = ("cx", "mem", "mem_ref", "base", "limit")

    def __init__(self, store: wasmtime.Store, memory: wasmtime.Memory) -> None:
        self.cx = store._context()
        self.mem = memory._memory
        self.mem_ref = byref(self.mem)
        self.base = ctypes.cast(_mem_data(self.cx, self.mem_ref), ctypes.c_void_p).value or 0
        self.limit = 0
        self.refresh()

    def refresh(self) -> None:
        self.limit = _mem_size(self.cx, self.mem_ref)

    def size(self) -> int:
        return _mem_size(self.cx, self.mem_ref)

    def _at(self, ptr: int, n: int) -> int:
        if ptr + n > self.limit:
            raise HostTrap("bad_pointer", f"out-of-bounds access: {n} bytes at {ptr:#x}")
        return self.base + ptr

    def read(self, ptr: int, n: int) -> bytes:
        if n == 0:
            return b""
        return ctypes.string_at(self._at(ptr, n), n)

    def write(self, ptr: int, data: bytes) -> None:
        if data:
            ctypes.memmove(self._at(ptr, len(data)), data, len(data))

    def write_u32(self, ptr: int, value: int) -> None:
        _U32.from_address(self._at(ptr, 4)).value = value

    def write_u64(self, ptr: int, value: int) -> None:
        _U64.from_address(self._at(ptr, 8)).value = value

    def read_u32(self, ptr: int) -> int:
        return _U32.from_address(self._at(ptr, 4)).value
