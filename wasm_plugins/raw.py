"""Fast calls across the wasm boundary, on wasmtime's "unchecked" C API.

wasmtime-py's `Func.__call__` and its host-function trampoline look up types and box every value
in a `Val` on each call (several microseconds). The proxy-wasm ABI only moves i32/i64 scalars, so we
call through `wasmtime_func_call_unchecked` with one preallocated raw-value buffer per function, and
define host functions with `wasmtime_func_new_unchecked` and our own trampoline.

Every crossing is kept to as few ctypes calls as possible, with plain integer arguments: on a busy
(or virtualised) machine each ctypes call costs microseconds once its code has left the CPU caches
between requests, and a request makes dozens of them. So: values move through precompiled `struct`
formats rather than ctypes union objects, linear memory is a `memoryview` rather than a ctypes call
per access, and the calls that cannot block (fuel, deadline, memory size) keep the GIL.

Safety: the unchecked API trusts the caller about types. Exports are called only after their
signatures were checked against the ABI (`wasm_plugins.abi.CALLBACKS`); host functions are created
with the type the module declared and the trampoline reads and writes each slot by that type.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable
from ctypes import byref, c_size_t, c_uint64, c_void_p
from typing import Any

import wasmtime
from wasmtime import _bindings as _raw_bindings
from wasmtime import _ffi as ffi

_RAW = ffi.wasmtime_val_raw_t
_SLOT = ctypes.sizeof(_RAW)  # 16: every value slot, whatever its type
_TRAP_PTR = ctypes.POINTER(ffi.wasm_trap_t)


def _fn(lib: ctypes.CDLL, name: str, restype: Any, *argtypes: Any) -> Any:
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = argtypes
    return f


# The same library through two handles. Calling into wasm must release the GIL: the epoch ticker
# (a Python thread) has to run while a plugin spins. The bookkeeping calls return at once and are
# cheaper holding it. All take raw addresses as ints: no argument wrapping per call.
_nogil = _raw_bindings.dll
_gil = ctypes.PyDLL(_nogil._name)
_call_unchecked = _fn(_nogil, "wasmtime_func_call_unchecked", c_void_p, c_void_p, c_void_p, c_void_p, c_size_t,
                      c_void_p)
_set_fuel = _fn(_gil, "wasmtime_context_set_fuel", c_void_p, c_void_p, c_uint64)
_get_fuel = _fn(_gil, "wasmtime_context_get_fuel", c_void_p, c_void_p, c_void_p)
_set_epoch_deadline = _fn(_gil, "wasmtime_context_set_epoch_deadline", None, c_void_p, c_uint64)
_mem_size = _fn(_gil, "wasmtime_memory_data_size", c_size_t, c_void_p, c_void_p)
_mem_data = _fn(_gil, "wasmtime_memory_data", c_void_p, c_void_p, c_void_p)

# One value slot per type: little-endian, padded to the slot size. i32s are read unsigned:
# proxy-wasm i32s are pointers, sizes and ids (Python would see them signed).
_SLOT_FORMAT = {"i32": "I12x", "i64": "q8x", "f32": "f12x", "f64": "d8x"}
_RESULT = {"i32": struct.Struct("<I"), "i64": struct.Struct("<q"), "f32": struct.Struct("<f"),
           "f64": struct.Struct("<d")}
# What a host function's integer result is wrapped to (C's conversion, as a ctypes field did).
_WRAP = {"i32": 0xFFFFFFFF, "i64": 0xFFFFFFFFFFFFFFFF}
_HOST_RESULT = {**_RESULT, "i64": struct.Struct("<Q")}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def address(obj: Any) -> int:
    """The address a ctypes pointer-like object (a store context, a wasm_trap_t*) points at."""
    return ctypes.cast(obj, c_void_p).value or 0


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


def _slots(kinds: tuple[str, ...]) -> struct.Struct:
    return struct.Struct("<" + "".join(_SLOT_FORMAT[k] for k in kinds))


# --- host functions ------------------------------------------------------------------------------

class _HostEntry:
    __slots__ = ("fn", "params", "slots", "result", "wrap", "owner")

    def __init__(self, fn: Callable[..., Any], params: tuple[str, ...], result: str | None, owner: Any) -> None:
        self.fn = fn
        self.params = _slots(params)
        # The value slots wasmtime passes, as a ctypes array type laid over their address: reading and
        # writing them is then a struct call on a buffer, not a foreign call (string_at, memmove)
        # through libffi, which costs several times more.
        self.slots = ctypes.c_char * (_SLOT * max(len(params), 1 if result else 0, 1))
        self.result = _HOST_RESULT[result] if result else None
        self.wrap = _WRAP.get(result or "")
        self.owner = owner


_HOST: dict[int, _HostEntry] = {}
_next_id = 1


# wasmtime's callback type with every pointer as a plain integer (same C signature): ctypes then
# hands the trampoline ints instead of building pointer objects per call.
@ctypes.CFUNCTYPE(c_size_t, c_void_p, c_void_p, c_void_p, c_size_t)
def _trampoline_int(env: int, caller: int, slots: int, nslots: int) -> int:
    entry = _HOST[env]
    try:
        # wasm may grow memory between host calls: RawMemory re-reads its size when an access
        # falls past the size it knows (linear memory never shrinks).
        params = entry.params
        values = entry.slots.from_address(slots)
        result = entry.fn(*params.unpack_from(values)) if params.size else entry.fn()
        fmt = entry.result
        if fmt is not None:
            if entry.wrap is not None:
                result &= entry.wrap
            fmt.pack_into(values, 0, result)
        return 0
    except BaseException as exc:  # noqa: BLE001 - every failure must become a trap, never unwind into C
        entry.owner.pending_error = exc
        msg = f"host: {exc}".encode()
        trap = ffi.wasmtime_trap_new(ctypes.create_string_buffer(msg), len(msg))
        return address(trap)


_trampoline = ctypes.cast(_trampoline_int, ffi.wasmtime_func_unchecked_callback_t)


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
    """One exported function, callable with ints (unsigned i32s); returns its single result or None."""

    __slots__ = ("store", "func", "cx", "func_at", "nparams", "args", "result", "buf", "view", "buf_at",
                 "nbuf", "trap", "trap_at")

    def __init__(self, store: wasmtime.Store, func: wasmtime.Func) -> None:
        ty = func.type(store)
        self.store = store  # keeps the store (and so cx) alive as long as we may call
        self.func = func._func
        self.cx = address(store._context())
        self.func_at = ctypes.addressof(self.func)
        params = _kinds(ty.params)
        results = _kinds(ty.results)
        if any(k != "i32" for k in params):
            raise ValueError("callbacks take i32 parameters only")
        self.nparams = len(params)
        self.args = _slots(params)
        self.result = _RESULT[results[0]] if results else None
        self.nbuf = max(1, self.nparams, len(results))
        self.buf = (_RAW * self.nbuf)()
        self.view = memoryview(self.buf).cast("B")
        self.buf_at = ctypes.addressof(self.buf)
        self.trap = c_void_p(0)  # wasm_trap_t* out-parameter, reused
        self.trap_at = ctypes.addressof(self.trap)

    def __call__(self, *args: int) -> int | None:
        if self.nparams:
            if len(args) != self.nparams:  # 0.1.0 callbacks lack trailing flags: pad or cut
                args = (*args, *(0,) * self.nparams)[:self.nparams]
            self.args.pack_into(self.view, 0, *args)
        err = _call_unchecked(self.cx, self.func_at, self.buf_at, self.nbuf, self.trap_at)
        if err:
            raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, ctypes.POINTER(ffi.wasmtime_error_t)))
        if self.trap.value:
            trap = ctypes.cast(self.trap.value, _TRAP_PTR)
            self.trap.value = 0
            raise wasmtime.Trap._from_ptr(trap)
        fmt = self.result
        return fmt.unpack_from(self.view)[0] if fmt is not None else None


class Fuel:
    """Fuel and the epoch deadline of one store: set before each callback, read after it."""

    __slots__ = ("store", "cx", "left", "left_at")

    def __init__(self, store: wasmtime.Store) -> None:
        self.store = store
        self.cx = address(store._context())
        self.left = c_uint64(0)
        self.left_at = ctypes.addressof(self.left)

    def arm(self, fuel: int, ticks: int) -> None:
        err = _set_fuel(self.cx, fuel)
        if err:
            raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, ctypes.POINTER(ffi.wasmtime_error_t)))
        _set_epoch_deadline(self.cx, ticks)

    def remaining(self) -> int:
        err = _get_fuel(self.cx, self.left_at)
        if err:
            raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, ctypes.POINTER(ffi.wasmtime_error_t)))
        return self.left.value


class RawMemory:
    """Bounds-checked reads and writes of a plugin's linear memory, through a memoryview of it.

    The engine is configured so memories never move (`memory_may_move = False`), so the base
    address is fixed for the store's life. Memory only grows: the view covers the size last seen,
    and an access past it re-reads the size (and widens the view) before deciding it is out of bounds.
    """

    __slots__ = ("store", "cx", "mem", "mem_at", "base", "limit", "view")

    def __init__(self, store: wasmtime.Store, memory: wasmtime.Memory) -> None:
        self.store = store  # the view points into the store's memory: keep the store alive with it
        self.cx = address(store._context())
        self.mem = memory._memory
        self.mem_at = ctypes.addressof(self.mem)
        self.base = _mem_data(self.cx, self.mem_at) or 0
        self.limit = 0
        self.view = memoryview(b"")
        self.refresh()

    def refresh(self) -> None:
        size = _mem_size(self.cx, self.mem_at)
        if size != self.limit:
            self.limit = size
            self.view = memoryview((ctypes.c_char * size).from_address(self.base)).cast("B") if size else \
                memoryview(b"")

    def size(self) -> int:
        return _mem_size(self.cx, self.mem_at)

    def _check(self, ptr: int, n: int) -> None:
        if ptr + n > self.limit:
            self.refresh()
            if ptr + n > self.limit:
                raise HostTrap("bad_pointer", f"out-of-bounds access: {n} bytes at {ptr:#x}")

    def read(self, ptr: int, n: int) -> bytes:
        if n == 0:
            return b""
        if ptr + n > self.limit:
            self._check(ptr, n)
        return self.view[ptr:ptr + n].tobytes()

    def write(self, ptr: int, data: bytes) -> None:
        n = len(data)
        if n:
            if ptr + n > self.limit:
                self._check(ptr, n)
            self.view[ptr:ptr + n] = data

    def write_u32(self, ptr: int, value: int) -> None:
        if ptr + 4 > self.limit:
            self._check(ptr, 4)
        _U32.pack_into(self.view, ptr, value & 0xFFFFFFFF)

    def write_u64(self, ptr: int, value: int) -> None:
        if ptr + 8 > self.limit:
            self._check(ptr, 8)
        _U64.pack_into(self.view, ptr, value & 0xFFFFFFFFFFFFFFFF)

    def read_u32(self, ptr: int) -> int:
        if ptr + 4 > self.limit:
            self._check(ptr, 4)
        return _U32.unpack_from(self.view, ptr)[0]
