"""The plugin host's contracts with what it stands on: wasmtime-py's private API (checked before the
fast path is used, refused when it changed) and the explicit table of host functions plugins import."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from types import SimpleNamespace

import wasmtime
from wasmtime import _bindings, _ffi

from testkit.harness import ROOT
from wasm_plugins import wasmtime_api
from wasm_plugins.instance import PluginInstance
from wasm_plugins.module import ENV_IMPORTS, WASI_METHODS, classify_import


def test_installed_wasmtime_matches_the_private_api() -> None:
    assert wasmtime_api.problems(_bindings, _ffi, wasmtime) == []


def test_a_changed_signature_refuses_the_fast_path_at_import() -> None:
    # wasmtime's bindings as a release that widened the fuel argument to a struct would declare them
    patch = ("import ctypes, wasmtime._bindings as b; "
             "b._wasmtime_context_set_fuel.argtypes = [b._wasmtime_context_set_fuel.argtypes[0], ctypes.c_uint32]; "
             "import wasm_plugins.raw")
    proc = subprocess.run([sys.executable, "-c", patch], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "UnsupportedWasmtime" in proc.stderr
    assert "wasmtime_context_set_fuel: signature (*wasmtime_context, u32) -> *wasmtime_error" in proc.stderr
    assert "expected (*wasmtime_context, u64) -> *wasmtime_error" in proc.stderr


def test_missing_symbols_and_changed_structs_are_named() -> None:
    bindings = SimpleNamespace(**{k: getattr(_bindings, k) for k in dir(_bindings) if not k.startswith("__")})
    del bindings._wasmtime_memory_data
    ffi = SimpleNamespace(**{k: getattr(_ffi, k) for k in dir(_ffi) if not k.startswith("__")})

    class Slot(ctypes.Structure):
        _fields_ = [("i64", ctypes.c_int64)]  # 8 bytes: raw.py would write past every value slot

    ffi.wasmtime_val_raw_t = Slot
    found = wasmtime_api.problems(bindings, ffi, wasmtime)
    assert "wasmtime_memory_data: not in wasmtime._bindings" in found
    assert "wasmtime_val_raw_t: 8 bytes, expected 16" in found
    assert len(found) == 2


def test_every_host_method_is_imported_through_the_table() -> None:
    methods = {n for n in dir(PluginInstance) if n.startswith(("proxy_", "wasi_"))}
    assert methods == {m for m in (*ENV_IMPORTS.values(), *WASI_METHODS.values()) if m.startswith(("proxy_", "wasi_"))}
    for method in (*ENV_IMPORTS.values(), *WASI_METHODS.values()):
        assert callable(getattr(PluginInstance, method)), method
    ty = wasmtime.FuncType([wasmtime.ValType.i32()], [wasmtime.ValType.i32()])
    assert classify_import("env", "proxy_log", ty) == "implemented"
    assert classify_import("env", "proxy_not_in_the_abi_yet", ty) == "stubbed"
    assert classify_import("env", "not_a_host_function", ty) == "unresolved"
    assert classify_import("wasi_snapshot_preview1", "args_get", ty) == "implemented"
