"""One sandboxed instance of a plugin version: a wasmtime Store (fuel, epoch deadline, memory cap)
with the module instantiated against our host functions, and the proxy-wasm contexts living in it.

Like an Envoy worker's VM, one instance serves many requests: each request phase is a stream
context; contexts interleave only while one waits for an http call. A trap poisons the instance
(`broken` names the reason); the owning version replaces it."""

from __future__ import annotations

import asyncio
import gc
import itertools
import logging
from collections.abc import Callable
from typing import Any

import wasmtime

from wasm_plugins import abi
from wasm_plugins.engine import deadline_ticks, engine
from wasm_plugins.host_http import HttpHost
from wasm_plugins.host_misc import MiscHost, unimplemented_stub
from wasm_plugins.module import ENV_IMPORTS, WASI_METHODS, WASI_MODULES
from wasm_plugins.raw import Fuel, HostTrap, RawMemory, WasmCallError, callee, host_func
from wasm_plugins.state import CallResult, ContextState, RootState, StreamState
from wasm_plugins.wasi import ProcExit, WasiHost, denied

log = logging.getLogger("edgegw.plugins")

_PAGE = 65536
_WASM_ERRORS = (wasmtime.Trap, wasmtime.WasmtimeError)
_gc_isenabled, _gc_disable, _gc_enable = gc.isenabled, gc.disable, gc.enable


class PluginInstance(HttpHost, MiscHost, WasiHost):
    def __init__(self, version: Any, services: Any) -> None:
        self.version = version
        self.services = services
        self.log = logging.getLogger(f"edgegw.plugin.{version.name}")
        self.limits = version.limits
        self.memory_cap = version.limits.memory_mb << 20
        self.ticks = deadline_ticks(version.limits.deadline_ms)
        store = wasmtime.Store(engine())
        store.set_limits(memory_size=self.memory_cap, instances=4, tables=4, memories=1)
        self.store: wasmtime.Store | None = store
        self.fuel = Fuel(store, version.limits.fuel, self.ticks)
        self.pending_error: BaseException | None = None
        self.current: ContextState | None = None
        self.contexts: dict[int, ContextState] = {}
        self.roots: dict[bytes, int] = {}
        self.bound: dict[int, tuple[Any, int]] = {}  # id(binding config) -> (it, its root context id)
        self.configuring: bytes | None = None
        self.broken: str | None = None
        self.retired = False
        self.active = 0  # stream contexts open in this instance (requests running on it)
        self.delivering: CallResult | None = None  # the http call answer being handed to the plugin
        self._ids = itertools.count(1)
        self.fn: dict[str, Callable[..., int | None]] = {}
        self.mem: Any = None
        self.alloc: Any = None
        try:
            self._start(version)
        except BaseException:
            self.release()  # its memory and compiled state go now, not when a collector finds them
            raise

    def _start(self, version: Any) -> None:
        store = self.store
        assert store is not None
        module = version.module
        externs = [self._import(store, i.module, i.name or "", i.type) for i in module.imports]
        self.fuel.arm()
        try:
            instance = wasmtime.Instance(store, module, externs)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            raise self._failure(exc) from None
        exports = instance.exports(store)
        memory = exports["memory"]
        assert isinstance(memory, wasmtime.Memory)
        self.mem = RawMemory(store, memory)
        for name in version.info.callbacks:
            func = exports[name]
            assert isinstance(func, wasmtime.Func)
            self.fn[name] = callee(store, func)
        self.alloc = self.fn.get("proxy_on_memory_allocate") or self.fn.get("malloc")
        # The end-of-stream callbacks this plugin exports (most export none of them): closing a stream
        # then costs nothing for the others.
        self.closing = tuple(n for n in ("proxy_on_done", "proxy_on_log", "proxy_on_delete") if n in self.fn)
        start = "_initialize" if "_initialize" in self.fn else "_start" if "_start" in self.fn else None
        if start is not None:
            try:
                self.call(start)
            except WasmCallError as exc:
                err = self.pending_error
                if not (isinstance(err, ProcExit) and err.code == 0):  # main() returning through exit(0)
                    raise exc
                self.broken = None

    # --- imports ------------------------------------------------------------------------------

    def _import(self, store: wasmtime.Store, module: str, name: str, ty: Any) -> wasmtime.Func:
        fn: Any = None
        if module == "env":
            method = ENV_IMPORTS.get(name)
            if method is not None:
                fn = getattr(self, method)
            elif name.startswith("proxy_"):  # a proxy-wasm call this host does not implement
                fn = unimplemented_stub(str(ty.results[0]) if ty.results else None)
        elif module in WASI_MODULES:
            method = WASI_METHODS.get(name)
            fn = getattr(self, method) if method is not None else denied(name)
        if fn is None or not isinstance(ty, wasmtime.FuncType):
            raise WasmCallError("link", f"unresolved import {module}.{name}")
        return host_func(store, ty, fn, self)

    # --- calling into the plugin ----------------------------------------------------------------

    def call(self, name: str, *args: int) -> int | None:
        """Run one callback under the sandbox: fresh fuel and deadline. A failure breaks the instance
        and raises WasmCallError with the reason."""
        f = self.fn.get(name)
        if f is None or self.broken:
            if self.broken:  # checked before anything touches the store: a released one is gone
                raise WasmCallError("instance_lost", f"instance failed earlier ({self.broken})")
            return None
        fuel = self.fuel
        fuel.arm()
        self.pending_error = None
        # The deadline is wall-clock and host functions run inside it: a collector pause in one of
        # them must not be charged to the plugin, so collection waits until the callback returns.
        collecting = _gc_isenabled()
        if collecting:
            _gc_disable()
        try:
            return f(*args)
        except _WASM_ERRORS as exc:
            raise self._failure(exc) from None
        finally:
            if collecting:
                _gc_enable()
            used = fuel.used()
            current = self.current
            if current is not None and type(current) is StreamState:
                current.fuel += used

    def _failure(self, exc: Exception) -> WasmCallError:
        reason = self._classify(exc)
        err = self.pending_error
        message = str(err) if isinstance(err, HostTrap) else trap_message(exc)
        if err is not None and not isinstance(err, HostTrap):
            log.error("plugin %s: host function failed", self.version.name, exc_info=err)
        self.flush_stdio()  # what the plugin wrote before it died (a panic message) goes out first
        if err is not None:
            forget_frames(err)
        self.broken = reason
        return WasmCallError(reason, message)

    def _classify(self, exc: Exception) -> str:
        err = self.pending_error
        if isinstance(err, HostTrap):
            return err.reason
        if err is not None:
            return "host_error"
        code = exc.trap_code if isinstance(exc, wasmtime.Trap) else None
        if code == wasmtime.TrapCode.INTERRUPT:
            return "timeout"
        if code == wasmtime.TrapCode.OUT_OF_FUEL:
            return "fuel"
        if code == wasmtime.TrapCode.STACK_OVERFLOW:
            return "stack"
        # wasmtime reports no "grow refused" event to Python: a trap with memory near the cap is
        # counted as the memory limit (allocators trap or abort when growth fails).
        if self.mem is not None and self.mem.size() + _PAGE > self.memory_cap * 0.75:
            return "memory"
        return "trap"

    def copy_out(self, data: bytes, ptr_ptr: int, size_ptr: int) -> None:
        """Give the plugin `data` in memory it allocated (it frees it), as proxy-wasm hosts do."""
        n = len(data)
        if n == 0:
            self.mem.write_u32(ptr_ptr, 0)
            self.mem.write_u32(size_ptr, 0)
            return
        if self.alloc is None:
            raise HostTrap("abi", "no allocator export")
        try:
            ptr = self.alloc(n) or 0
        except _WASM_ERRORS as exc:
            raise HostTrap(self._classify(exc), f"allocator failed: {exc}") from None
        if ptr == 0:
            raise HostTrap("memory", f"plugin could not allocate {n} bytes")
        self.mem.copy_out(ptr, data, ptr_ptr, size_ptr)

    # --- contexts -----------------------------------------------------------------------------

    def root_for(self, config: bytes) -> int:
        """The root context configured with `config`, created (vm_start, configure) on first use."""
        rid = self.roots.get(config)
        if rid is not None:
            return rid
        root = RootState(id=next(self._ids), root_id=0, config=config)
        root.root_id = root.id
        self.contexts[root.id] = root
        self.current = root
        self.call("proxy_on_context_create", root.id, 0)
        if self.call("proxy_on_vm_start", root.id, len(self.version.vm_config)) == 0:
            raise WasmCallError("vm_start", "proxy_on_vm_start returned false")
        self.configuring = config
        try:
            ok = self.call("proxy_on_configure", root.id, len(config))
        finally:
            self.configuring = None
        if ok == 0:
            self.contexts.pop(root.id, None)
            raise WasmCallError("configure", "proxy_on_configure returned false (configuration rejected)")
        self.roots[config] = root.id
        return root.id

    def open_stream(self, root_id: int, ctx: Any) -> StreamState:
        st = StreamState(id=next(self._ids), root_id=root_id, ctx=ctx, plugin_name=self.version.name)
        self.contexts[st.id] = st
        self.current = st
        self.active += 1
        try:
            self.call("proxy_on_context_create", st.id, root_id)
        except WasmCallError:
            self.active -= 1
            self.contexts.pop(st.id, None)
            raise
        return st

    def callback(self, st: StreamState, name: str, *args: int) -> int:
        self.current = st
        return self.call(name, *args) or abi.CONTINUE

    def close_stream(self, st: StreamState) -> WasmCallError | None:
        """on_done, on_log, on_delete; returns (does not raise) a failure so the caller decides."""
        if st.pending:
            for task in st.pending.values():
                task.cancel()
            st.pending.clear()
        try:
            if self.closing and not self.broken:
                self.current = st
                for name in self.closing:
                    self.call(name, st.id)
            return None
        except WasmCallError as exc:
            return exc
        finally:
            self.contexts.pop(st.id, None)
            self.current = None
            self.active -= 1
            if self.retired and self.active == 0:
                self.release()

    # --- root-context events: ticks, queues, http calls made outside a request -------------------

    def start_tick(self, root: RootState) -> None:
        if root.tick_task is not None:
            root.tick_task.cancel()
            root.tick_task = None
        if root.tick_ms <= 0:
            return
        try:
            root.tick_task = asyncio.get_running_loop().create_task(self._tick_loop(root))
        except RuntimeError:
            pass  # no event loop (e.g. `edgegw plugin check`): nothing to tick

    async def _tick_loop(self, root: RootState) -> None:
        while not self.broken and not self.retired:
            await asyncio.sleep(root.tick_ms / 1000.0)
            self._root_event(root, "proxy_on_tick", root.id)

    def queue_ready(self, root_id: int, qid: int) -> None:
        root = self.contexts.get(root_id)
        if isinstance(root, RootState):
            self._root_event(root, "proxy_on_queue_ready", root_id, qid)

    def deliver_root_call(self, root: ContextState, token: int, task: asyncio.Task[Any]) -> None:
        root.pending.pop(token, None)
        if task.cancelled() or not isinstance(root, RootState):
            return
        answer = self.delivering = task.result()
        try:
            self._root_event(root, "proxy_on_http_call_response", root.id, token, len(answer.headers),
                             len(answer.body), 0)
        finally:
            self.delivering = None

    def _root_event(self, root: RootState, name: str, *args: int) -> None:
        if self.broken or self.retired:
            return
        self.current = root
        try:
            self.call(name, *args)
        except WasmCallError as exc:
            log.warning("plugin %s failed in %s: %s (%s)", self.version.name, name, exc, exc.reason)
            self.version.instance_failed(self, exc.reason)
        finally:
            self.current = None

    def retire(self) -> None:
        """Stop timers and background calls; streams still running finish on this instance, and the
        last one to end releases it."""
        self.retired = True
        self._stop_roots()
        if self.active == 0:
            self.release()

    def _stop_roots(self) -> None:
        for st in list(self.contexts.values()):
            if isinstance(st, RootState):
                if st.tick_task is not None:
                    st.tick_task.cancel()
                    st.tick_task = None
                for task in st.pending.values():
                    task.cancel()
                st.pending.clear()

    def release(self) -> None:
        """Free the store now: its linear memory, instance and host functions (wasmtime finalizes
        them, which drops their trampolines). Only for an instance nothing will call again: a broken
        one (every call checks `broken` before entering the store) or a retired one whose last
        stream ended. Safe to call twice."""
        if self.store is None:
            return
        self.flush_stdio()
        self.broken = self.broken or "released"
        self.retired = True
        self._stop_roots()
        self.services.queues.forget(self)
        self.fn = {}
        self.alloc = None
        self.mem = None
        self.bound.clear()
        self.pending_error = None
        store, self.store = self.store, None
        store.close()


def trap_message(exc: BaseException) -> str:
    """The line of a wasmtime error that says what happened ("wasm trap: ..."), not its backtrace."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if line.startswith("wasm trap:"):
            return line
    for line in lines:
        if not line.startswith("error while executing") and not line[:1].isdigit():
            return line
    return lines[0] if lines else type(exc).__name__


def forget_frames(exc: BaseException | None) -> None:
    """Drop the tracebacks of an exception and of those it was raised from: their frames hold the
    instance (and so its store) as long as the exception lives, and an exception kept in a frame's
    local is a cycle only the collector would ever break."""
    seen = 0
    while exc is not None and seen < 16:
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__
        seen += 1
