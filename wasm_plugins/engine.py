"""The process-wide wasmtime engine, its epoch ticker, and compilation with an on-disk module cache."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from importlib.metadata import version as pkg_version
from pathlib import Path

import wasmtime

from edgecore.files import write_atomic

log = logging.getLogger("edgegw.plugins")

EPOCH_TICK_S = 0.001  # deadline granularity: a callback overruns its deadline by at most one tick
MAX_WASM_STACK = 512 * 1024  # bytes of native stack a plugin may use; deeper recursion traps

_engine: wasmtime.Engine | None = None
_lock = threading.Lock()
WASMTIME_VERSION = pkg_version("wasmtime")
_ENGINE_FLAGS = f"fuel=1,epoch=1,stack={MAX_WASM_STACK},opt=speed,nomove=1"


def engine() -> wasmtime.Engine:
    """The shared engine (one per process, so compiled modules and the epoch ticker are shared)."""
    global _engine
    with _lock:
        if _engine is None:
            cfg = wasmtime.Config()
            cfg.consume_fuel = True
            cfg.epoch_interruption = True
            cfg.max_wasm_stack = MAX_WASM_STACK
            cfg.cranelift_opt_level = "speed"
            # Linear memories never move (they reserve their 4 GiB address range up front), so the
            # host can keep each memory's base address instead of asking for it on every access.
            cfg.memory_may_move = False
            _engine = wasmtime.Engine(cfg)
            threading.Thread(target=_tick, args=(_engine,), name="wasm-epoch", daemon=True).start()
    return _engine


def _tick(eng: wasmtime.Engine) -> None:
    # One thread for every plugin: each store's deadline is "N ticks after the callback started".
    # Wasm runs with the GIL released, so this thread keeps ticking while a plugin spins.
    while True:
        time.sleep(EPOCH_TICK_S)
        eng.increment_epoch()


def deadline_ticks(deadline_ms: float) -> int:
    """Ticks to allow for `deadline_ms`: rounded up, plus one because the current tick is partial."""
    return max(1, int(-(-deadline_ms // (EPOCH_TICK_S * 1000)))) + 1


def to_binary(data: bytes) -> bytes:
    """Accept the binary format or WAT text (handy for tests and tiny plugins)."""
    if data[:4] == b"\0asm":
        return data
    try:
        return bytes(wasmtime.wat2wasm(data.decode("utf-8")))
    except (UnicodeDecodeError, wasmtime.WasmtimeError) as exc:
        raise CompileError(f"not a wasm binary and not valid WAT: {_first_line(exc)}") from None


class CompileError(Exception):
    """The bytes are not a valid module for this engine."""


@dataclass
class Compiled:
    module: wasmtime.Module
    sha256: str
    binary: bytes
    from_cache: bool
    seconds: float


def cache_dir() -> Path:
    explicit = os.environ.get("EDGEGW_PLUGIN_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgegw" / "wasm-modules"


def cache_key(sha256: str) -> str:
    """Modules are native code for this wasmtime build and engine settings: key on all three."""
    flags = hashlib.sha256(_ENGINE_FLAGS.encode()).hexdigest()[:8]
    return f"{sha256}-wasmtime{WASMTIME_VERSION}-{flags}.cwasm"


def compile_module(data: bytes, use_cache: bool = True) -> Compiled:
    """Compile (or load from the on-disk cache) a module. Thread-safe; CPU-bound, so callers on the
    event loop run it in a worker thread."""
    started = time.perf_counter()
    binary = to_binary(data)
    sha = hashlib.sha256(binary).hexdigest()
    eng = engine()
    path = cache_dir() / cache_key(sha)
    if use_cache and path.is_file():
        try:
            module = wasmtime.Module.deserialize_file(eng, str(path))
            return Compiled(module, sha, binary, True, time.perf_counter() - started)
        except wasmtime.WasmtimeError as exc:  # stale or corrupt entry: recompile and overwrite
            log.warning("discarding cached module %s: %s", path.name, _first_line(exc))
    try:
        module = wasmtime.Module(eng, binary)
    except wasmtime.WasmtimeError as exc:
        raise CompileError(_first_line(exc)) from None
    if use_cache:
        _store(path, module)
    return Compiled(module, sha, binary, False, time.perf_counter() - started)


def _store(path: Path, module: wasmtime.Module) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, module.serialize(), prefix=".tmp-")
    except OSError as exc:
        log.warning("cannot write the module cache at %s: %s", path.parent, exc)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
