"""The private parts of wasmtime-py that `wasm_plugins.raw` calls, and the check that the installed
wasmtime still has them as raw.py assumes.

raw.py calls C functions through its own ctypes function objects with no argtypes (every argument
pointer-sized), builds wasmtime's structs itself and reaches into private attributes of the public
classes. A wasmtime release that changed any of these would not raise: it would corrupt memory. So
raw.py runs `problems()` when it is imported and refuses to load (`UnsupportedWasmtime`) when the
installed version differs from this contract in any way; pyproject.toml bounds wasmtime to the
majors checked against it. The signatures are read from wasmtime-py's own generated bindings
(`wasmtime._bindings`, which follow the C headers), reduced to their ABI shape.
"""

from __future__ import annotations

import ctypes
from typing import Any

# C function -> (argument shapes, result shape); see `shape` for the notation.
FUNCTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "wasmtime_func_call_unchecked": (("*wasmtime_context", "*wasmtime_func", "*wasmtime_val_raw", "u64",
                                      "*LP_wasm_trap_t"), "*wasmtime_error"),
    "wasmtime_context_set_fuel": (("*wasmtime_context", "u64"), "*wasmtime_error"),
    "wasmtime_context_get_fuel": (("*wasmtime_context", "*c_ulong"), "*wasmtime_error"),
    "wasmtime_context_set_epoch_deadline": (("*wasmtime_context", "u64"), "void"),
    "wasmtime_memory_data_size": (("*wasmtime_context", "*wasmtime_memory"), "u64"),
    "wasmtime_memory_data": (("*wasmtime_context", "*wasmtime_memory"), "*c_ubyte"),
    "wasmtime_trap_new": (("*c_char", "u64"), "*wasm_trap_t"),
    "wasmtime_func_new_unchecked": (("*wasmtime_context", "*wasm_functype_t", "fn", "ptr", "fn", "*wasmtime_func"),
                                    "void"),
}
# ctypes types raw.py builds or casts to: name in wasmtime._ffi -> (size in bytes, field shapes or None)
STRUCTS: dict[str, tuple[int, tuple[str, ...] | None]] = {
    "wasmtime_val_raw_t": (16, None),  # a union: one 16-byte slot per value, whatever its type
    "wasmtime_func_t": (16, ("u64", "ptr")),  # store_id, __private
    "wasm_trap_t": (0, None),  # opaque: only pointers to it
    "wasmtime_error_t": (0, None),
}
CALLBACK = (("ptr", "*wasmtime_caller", "*wasmtime_val_raw", "u64"), "u64")  # wasmtime_func_unchecked_callback_t
# Private attributes of public classes: class name -> attributes
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "Store": ("_context",),
    "Func": ("_from_raw",),
    "WasmtimeError": ("_from_ptr",),
    "Trap": ("_from_ptr",),
}


class UnsupportedWasmtime(ImportError):
    """The installed wasmtime does not match the private API the plugin host's fast path was written
    against."""


def shape(t: Any) -> str:
    """A ctypes type's ABI shape: `void`, `u64`/`i32`/..., `ptr` (void*), `*NAME` (pointer to NAME),
    `fn` (a function pointer), or `?NAME` for anything else."""
    if t is None:
        return "void"
    if isinstance(t, type) and issubclass(t, ctypes._Pointer):
        return "*" + t._type_.__name__
    if t in (ctypes.c_void_p, ctypes.c_char_p):
        return "ptr"
    if isinstance(t, type) and issubclass(t, ctypes._CFuncPtr):  # type: ignore[attr-defined]
        return "fn"
    code = getattr(t, "_type_", None)  # a simple C type's one-letter code
    if isinstance(t, type) and issubclass(t, ctypes._SimpleCData) and isinstance(code, str) and code in "bBhHiIlLqQ":
        signed = code in "bhilq"
        return f"{'i' if signed else 'u'}{ctypes.sizeof(t) * 8}"
    return "?" + getattr(t, "__name__", repr(t))


def problems(bindings: Any, ffi: Any, wasmtime: Any) -> list[str]:
    """How the given wasmtime modules differ from the contract above (empty: raw.py may use them)."""
    found: list[str] = []
    if ctypes.sizeof(ctypes.c_void_p) != 8:
        found.append("raw.py passes every argument as a 64-bit value: needs a 64-bit platform")
    if not isinstance(getattr(bindings, "dll", None), ctypes.CDLL):
        found.append("wasmtime._bindings.dll is not the loaded C library")
    for name, (args, result) in FUNCTIONS.items():
        fn = getattr(bindings, "_" + name, None)
        if fn is None:
            found.append(f"{name}: not in wasmtime._bindings")
            continue
        have = (tuple(shape(a) for a in fn.argtypes or ()), shape(fn.restype))
        if have != (args, result):
            found.append(f"{name}: signature {_sig(*have)}, expected {_sig(args, result)}")
    for name, (size, fields) in STRUCTS.items():
        t = getattr(ffi, name, None)
        if t is None:
            found.append(f"{name}: not in wasmtime._ffi")
        elif size and ctypes.sizeof(t) != size:
            found.append(f"{name}: {ctypes.sizeof(t)} bytes, expected {size}")
        elif fields is not None and tuple(shape(f[1]) for f in getattr(t, "_fields_", ())) != fields:
            found.append(f"{name}: fields changed")
    callback = getattr(ffi, "wasmtime_func_unchecked_callback_t", None)
    if callback is None:
        found.append("wasmtime_func_unchecked_callback_t: not in wasmtime._ffi")
    else:
        have = (tuple(shape(a) for a in callback._argtypes_), shape(callback._restype_))
        if have != CALLBACK:
            found.append(f"wasmtime_func_unchecked_callback_t: signature {_sig(*have)}, expected {_sig(*CALLBACK)}")
    for cls, attrs in ATTRIBUTES.items():
        for attr in attrs:
            if not hasattr(getattr(wasmtime, cls, None), attr):
                found.append(f"wasmtime.{cls}.{attr}: missing")
    return found


def _sig(args: tuple[str, ...], result: str) -> str:
    return f"({', '.join(args)}) -> {result}"


def check(bindings: Any, ffi: Any, wasmtime: Any, version: str) -> None:
    """Raise UnsupportedWasmtime naming every difference."""
    found = problems(bindings, ffi, wasmtime)
    if found:
        raise UnsupportedWasmtime(
            f"wasmtime {version} does not match the private API the plugin host calls "
            f"(wasm_plugins/wasmtime_api.py): {'; '.join(found)}. Install the wasmtime version "
            "pyproject.toml pins.")
