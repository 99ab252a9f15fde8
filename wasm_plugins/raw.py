"""Fast calls across the wasm boundary, on wasmtime's "unchecked" C API.

wasmtime-py's `Func.__call__` and its host-function trampoline look up types and box every value
in a `Val` on each call. The proxy-wasm ABI only moves i32/i64 scalars, so we
call through `wasmtime_func_call_unchecked` with one preallocated raw-value buffer per function, and
define host functions with `wasmtime_func_new_unchecked` and our own trampoline.

Every crossing is kept to as few ctypes calls as possible, each as cheap as ctypes allows, because
a request makes dozens of them (docs/plugins.md, "Where the time goes", has the figures). So: values move through precompiled
`struct` formats on raw addresses (`_ADDR`) rather than ctypes objects, linear memory is a
`memoryview` rather than a ctypes call per access, foreign-call arguments are converted once per
store rather than per call (`_arg`), each host function has its own specialised trampoline, exports
are plain closures, and the calls that cannot block (fuel, deadline, memory size) keep the GIL.

Safety: the unchecked API trusts the caller about types, and this module trusts wasmtime-py's
private `_bindings`/`_ffi` (checked by `wasm_plugins.wasmtime_api` when this module is imported).
Exports are called only after their signatures were checked against the ABI (`wasm_plugins.abi.CALLBACKS`); host functions are created
with the type the module declared and the trampoline reads and writes each slot by that type.
"""

from __future__ import annotations

import ctypes
import struct
import sys
from collections.abc import Callable
from ctypes import byref, c_size_t, c_uint64, c_void_p
from importlib.metadata import version as pkg_version
from typing import Any, cast

import wasmtime
from wasmtime import _bindings as _raw_bindings, _ffi as ffi

from wasm_plugins.wasmtime_api import check

# Everything below trusts these private parts: refuse to load on a wasmtime that changed them.
check(_raw_bindings, ffi, wasmtime, pkg_version("wasmtime"))

_RAW = ffi.wasmtime_val_raw_t
_SLOT = ctypes.sizeof(_RAW)  # 16: every value slot, whatever its type
_TRAP_PTR = ctypes.POINTER(ffi.wasm_trap_t)


def _fn(lib: ctypes.CDLL, name: str, restype: Any) -> Any:
    f: Any = lib[name]  # a function object of our own: wasmtime-py's (`lib.name`) keeps its settings
    f.restype = restype
    f.argtypes = None
    return f


# The same library through two handles. Calling into wasm must release the GIL: the epoch ticker
# (a Python thread) has to run while a plugin spins. The bookkeeping calls return at once and are
# cheaper holding it.
#
# Every argument of every call we make per request is fixed for the life of a store (its context,
# a function, a preallocated buffer, the fuel budget, the deadline), so each is converted to a
# ctypes argument once (`_arg`) and the functions are declared without argtypes: ctypes then copies
# the prepared arguments instead of calling a converter and allocating an object per argument per
# call. All are pointer-sized: integers (size_t, uint64_t) travel in the same 64-bit argument class
# as pointers in the C ABIs wasmtime supports.
assert ctypes.sizeof(c_void_p) == ctypes.sizeof(c_size_t) == ctypes.sizeof(c_uint64) == 8
_arg = c_void_p.from_param
_nogil: ctypes.CDLL = _raw_bindings.dll  # type: ignore[attr-defined]  # private, vetted by check() above
_gil = ctypes.PyDLL(_nogil._name)
_call_unchecked = _fn(_nogil, "wasmtime_func_call_unchecked", c_void_p)  # (cx, func*, slots*, n, trap**)
_set_fuel = _fn(_gil, "wasmtime_context_set_fuel", c_void_p)  # (cx, fuel) -> error*
_get_fuel = _fn(_gil, "wasmtime_context_get_fuel", c_void_p)  # (cx, uint64_t*) -> error*
_set_epoch_deadline = _fn(_gil, "wasmtime_context_set_epoch_deadline", None)  # (cx, ticks)
_mem_size: Callable[..., int] = _fn(_gil, "wasmtime_memory_data_size", c_size_t)  # (cx, memory*) -> size
_mem_data = _fn(_gil, "wasmtime_memory_data", c_void_p)  # (cx, memory*) -> base

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
# The whole address space as one buffer, for reading and writing wasmtime's value slots and
# out-parameters at the raw addresses it hands us: a struct call on this is a plain C memcpy, where
# `from_address`, `string_at` or `memmove` would build a ctypes object or go through libffi per access.
# It is exactly as (un)safe as `from_address`: only addresses wasmtime gave us are touched.
_ADDR = memoryview((ctypes.c_char * sys.maxsize).from_address(0))


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

_HOST: dict[int, Any] = {}  # env id -> the ctypes callback, alive until wasmtime finalizes the function
_next_id = 1
# wasmtime's callback type (it returns a wasm_trap_t*) with every pointer and size as a plain
# integer (same C signature): ctypes then hands the trampoline ints instead of pointer objects.
_CALLBACK = ctypes.CFUNCTYPE(c_void_p, c_void_p, c_void_p, c_void_p, c_void_p)


def _trap(owner: Any, exc: BaseException) -> int:
    owner.pending_error = exc
    msg = f"host: {exc}".encode()
    return address(ffi.wasmtime_trap_new(ctypes.create_string_buffer(msg), len(msg)))


def _trampoline(fn: Callable[..., Any], params: tuple[str, ...], result: str | None, owner: Any) -> Any:
    """The C callback for one host function, specialised to its signature: each host call then costs
    one Python frame here, no lookup, and a struct call each way on the value slots (through `_ADDR`).
    Every failure becomes a trap recorded on `owner.pending_error`; nothing may unwind into C."""
    unpack = _slots(params).unpack_from  # "<" alone for no parameters: unpacks ()
    if result is None:
        def tramp(env: int, caller: int, slots: int, nslots: int) -> int:
            try:
                fn(*unpack(_ADDR, slots))
                return 0
            except BaseException as exc:  # noqa: BLE001
                return _trap(owner, exc)
    elif result in _WRAP:
        pack, wrap = _HOST_RESULT[result].pack_into, _WRAP[result]

        def tramp(env: int, caller: int, slots: int, nslots: int) -> int:
            try:  # the integer result is wrapped to its width (C's conversion, as a ctypes field did)
                pack(_ADDR, slots, fn(*unpack(_ADDR, slots)) & wrap)
                return 0
            except BaseException as exc:  # noqa: BLE001
                return _trap(owner, exc)
    else:
        pack = _HOST_RESULT[result].pack_into

        def tramp(env: int, caller: int, slots: int, nslots: int) -> int:
            try:
                pack(_ADDR, slots, fn(*unpack(_ADDR, slots)))
                return 0
            except BaseException as exc:  # noqa: BLE001
                return _trap(owner, exc)
    return _CALLBACK(tramp)


# typeshed types CFUNCTYPE's result as a class, not as a decorator.
@ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # type: ignore[untyped-decorator]
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
    callback = _trampoline(fn, _kinds(ty.params), results[0] if results else None, owner)
    _HOST[env] = callback
    raw = ffi.wasmtime_func_t()
    # The callback's code address, read out of it: `ctypes.cast` would record the callback in its own
    # `_objects`, a cycle that keeps it (and through its closure the instance) alive until a collection.
    code = ffi.wasmtime_func_unchecked_callback_t(cast(int, c_void_p.from_buffer(callback).value))  # never NULL
    ffi.wasmtime_func_new_unchecked(store._context(), ty.ptr(), code, env, _finalize, byref(raw))
    return wasmtime.Func._from_raw(raw)


# --- calls into the plugin -----------------------------------------------------------------------

def _raise_error(err: int) -> None:
    raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, ctypes.POINTER(ffi.wasmtime_error_t)))


def _raise_trap(trap_at: int) -> None:
    trap = _U64.unpack_from(_ADDR, trap_at)[0]
    _U64.pack_into(_ADDR, trap_at, 0)  # the out-parameter is reused: clear it for the next call
    raise wasmtime.Trap._from_ptr(ctypes.cast(trap, _TRAP_PTR))


def callee(store: wasmtime.Store, func: wasmtime.Func) -> Callable[..., int | None]:
    """One exported function as a plain Python function of ints (unsigned i32s), returning its single
    result or None. A closure rather than an object with `__call__`: Python calls it without a
    method frame, and everything it needs is a closure cell."""
    ty = func.type(store)
    params = _kinds(ty.params)
    results = _kinds(ty.results)
    if any(k != "i32" for k in params):
        raise ValueError("callbacks take i32 parameters only")
    if len(results) > 1:
        raise ValueError("callbacks return at most one value")
    nparams = len(params)
    nbuf = max(1, nparams, len(results))
    # Value slots, then one more for the wasm_trap_t* out-parameter: after the call one struct
    # read gives the result and the trap together.
    buf = (_RAW * (nbuf + 1))()
    view = memoryview(buf).cast("B")
    buf_at = ctypes.addressof(buf)
    trap_at = buf_at + nbuf * _SLOT
    pack_args = _slots(params).pack_into
    out = struct.Struct("<" + (_SLOT_FORMAT[results[0]] if results else f"{_SLOT}x") +
                        f"{_SLOT * (nbuf - 1)}xQ").unpack_from
    raw = func._func
    cx, func_at, slots, n, trap_out = (_arg(address(store._context())), _arg(ctypes.addressof(raw)), _arg(buf_at),
                                       _arg(nbuf), _arg(trap_at))

    def call(*args: int) -> int | None:
        value: int | None  # declared, not assigned: costs nothing per call
        if len(args) != nparams:  # 0.1.0 callbacks lack trailing flags: pad or cut
            args = (*args, *(0,) * nparams)[:nparams]
        pack_args(view, 0, *args)
        err = _call_unchecked(cx, func_at, slots, n, trap_out)
        if err:
            _raise_error(err)
        value, trap = out(view)
        if trap:
            _raise_trap(trap_at)
        return value

    def call_void(*args: int) -> None:
        if len(args) != nparams:
            args = (*args, *(0,) * nparams)[:nparams]
        pack_args(view, 0, *args)
        err = _call_unchecked(cx, func_at, slots, n, trap_out)
        if err:
            _raise_error(err)
        if out(view)[0]:
            _raise_trap(trap_at)

    # keep the store (and so cx), the raw function and the buffer alive as long as we may call
    call.keep = call_void.keep = (store, raw, buf)  # type: ignore[attr-defined]
    return call if results else call_void


class Fuel:
    """Fuel and the epoch deadline of one store: set before each callback, read after it."""

    __slots__ = ("store", "fuel", "left", "cx", "budget", "ticks", "left_out")

    def __init__(self, store: wasmtime.Store, fuel: int, ticks: int) -> None:
        self.store = store
        self.fuel = fuel
        self.left = c_uint64(0)
        self.cx = _arg(address(store._context()))
        self.budget = _arg(fuel)
        self.ticks = _arg(ticks)
        self.left_out = _arg(ctypes.addressof(self.left))

    def arm(self) -> None:
        """A full tank and a deadline `ticks` epochs from now: each callback gets the whole budget."""
        err = _set_fuel(self.cx, self.budget)
        if err:
            _raise_error(err)
        _set_epoch_deadline(self.cx, self.ticks)

    def used(self) -> int:
        """Fuel the callback since `arm` consumed."""
        err = _get_fuel(self.cx, self.left_out)
        if err:
            _raise_error(err)
        return self.fuel - self.left.value


class RawMemory:
    """Bounds-checked reads and writes of a plugin's linear memory, through a memoryview of it.

    The engine is configured so memories never move (`memory_may_move = False`), so the base
    address is fixed for the store's life. Memory only grows: the view covers the size last seen,
    and an access past it re-reads the size (and widens the view) before deciding it is out of bounds.
    """

    __slots__ = ("store", "cx", "mem", "mem_at", "base", "limit", "view")

    def __init__(self, store: wasmtime.Store, memory: wasmtime.Memory) -> None:
        self.store = store  # the view points into the store's memory: keep the store alive with it
        self.cx = _arg(address(store._context()))
        self.mem = memory._memory
        self.mem_at = _arg(ctypes.addressof(self.mem))
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

    def read_str(self, ptr: int, n: int) -> str:
        if ptr + n > self.limit and n:
            self._check(ptr, n)
        return str(self.view[ptr:ptr + n], "utf-8", "replace")

    def copy_out(self, ptr: int, data: bytes, ptr_ptr: int, size_ptr: int) -> None:
        """Write `data` at `ptr` (the plugin allocated it), then its address and size at the two
        out-pointers: one bounds test when all three fit, the separate checks otherwise."""
        n = len(data)
        if ptr + n <= self.limit and ptr_ptr + 4 <= self.limit and size_ptr + 4 <= self.limit:
            view = self.view
            view[ptr:ptr + n] = data
            _U32.pack_into(view, ptr_ptr, ptr)
            _U32.pack_into(view, size_ptr, n)
        else:
            self.write(ptr, data)
            self.write_u32(ptr_ptr, ptr)
            self.write_u32(size_ptr, n)

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
        value: int = _U32.unpack_from(self.view, ptr)[0]
        return value
