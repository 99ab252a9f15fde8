"""Host functions outside HTTP streams: logging, time, timers, shared data and queues, metrics, and
the calls edgegw does not implement, which answer with the status the SDKs expect instead of trapping."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from wasm_plugins import abi
from wasm_plugins.raw import HostTrap
from wasm_plugins.state import ContextState, RootState

if TYPE_CHECKING:  # annotations only: no import at run time
    from wasm_plugins.services import Services


class MiscHost:
    mem: Any
    current: ContextState | None
    contexts: dict[int, ContextState]
    services: Services
    version: Any
    log: logging.Logger

    def copy_out(self, data: bytes, ptr_ptr: int, size_ptr: int) -> None: ...
    def start_tick(self, root: RootState) -> None: ...

    _PY_LEVELS = (logging.DEBUG, logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)

    def plugin_log(self, level: int, text: str) -> None:
        py_level = self._PY_LEVELS[min(max(level, 0), 5)]
        if self.log.isEnabledFor(py_level):
            self.log.log(py_level, "%s", text[:4096])

    def proxy_log(self, level: int, ptr: int, size: int) -> int:
        self.plugin_log(level, self.mem.read_str(ptr, min(size, 1 << 16)))
        return abi.OK

    def proxy_get_log_level(self, ret: int) -> int:
        eff = self.log.getEffectiveLevel()
        level = 1 if eff <= logging.DEBUG else 2 if eff <= logging.INFO else 3 if eff <= logging.WARNING else 4
        self.mem.write_u32(ret, level)
        return abi.OK

    def proxy_get_current_time_nanoseconds(self, ret: int) -> int:
        self.mem.write_u64(ret, time.time_ns())
        return abi.OK

    def proxy_set_tick_period_milliseconds(self, period: int) -> int:
        st = self.current
        root = self.contexts.get(st.root_id) if st is not None else None
        if isinstance(root, RootState):
            floor = self.version.limits.min_tick_ms
            if 0 < period < floor:  # each tick costs a callback on the event loop
                if not root.tick_raised:
                    self.log.info("tick period %d ms raised to %d ms (limits.min_tick_ms)", period, floor)
                    root.tick_raised = True
                period = floor
            root.tick_ms = period
            self.start_tick(root)
        return abi.OK

    def proxy_done(self) -> int:
        return abi.OK

    def proxy_set_effective_context(self, context_id: int) -> int:
        st = self.contexts.get(context_id)
        if st is None:
            return abi.BAD_ARGUMENT
        self.current = st
        return abi.OK

    # --- shared data and queues (per gateway worker, shared by all plugins and their versions) ----

    def proxy_get_shared_data(self, kptr: int, ksize: int, ret_ptr: int, ret_size: int, ret_cas: int) -> int:
        found = self.services.shared.get(self.mem.read_str(kptr, ksize))
        if found is None:
            return abi.NOT_FOUND
        value, cas = found
        self.copy_out(value, ret_ptr, ret_size)
        self.mem.write_u32(ret_cas, cas)
        return abi.OK

    def proxy_set_shared_data(self, kptr: int, ksize: int, vptr: int, vsize: int, cas: int) -> int:
        key, value = self.mem.read_str(kptr, ksize), self.mem.read(vptr, vsize)
        return abi.OK if self.services.shared.set(key, value, cas) else abi.CAS_MISMATCH

    def proxy_register_shared_queue(self, nptr: int, nsize: int, ret_id: int) -> int:
        st = self.current
        qid = self.services.queues.register(self.mem.read_str(nptr, nsize), self, st.root_id if st else 0)
        self.mem.write_u32(ret_id, qid)
        return abi.OK

    def proxy_resolve_shared_queue(self, vptr: int, vsize: int, nptr: int, nsize: int, ret_id: int) -> int:
        qid = self.services.queues.resolve(self.mem.read_str(nptr, nsize))
        if qid is None:
            return abi.NOT_FOUND
        self.mem.write_u32(ret_id, qid)
        return abi.OK

    def proxy_enqueue_shared_queue(self, qid: int, vptr: int, vsize: int) -> int:
        ok = self.services.queues.enqueue(qid, self.mem.read(vptr, vsize))
        return abi.OK if ok else abi.NOT_FOUND

    def proxy_dequeue_shared_queue(self, qid: int, ret_ptr: int, ret_size: int) -> int:
        status, value = self.services.queues.dequeue(qid)
        if status == abi.OK:
            self.copy_out(value, ret_ptr, ret_size)
        return status

    # --- metrics (on /metrics as edgegw_plugin_{counter,gauge,histogram}_<name>{plugin=...}) ------

    def proxy_define_metric(self, metric_type: int, nptr: int, nsize: int, ret_id: int) -> int:
        if metric_type not in (abi.METRIC_COUNTER, abi.METRIC_GAUGE, abi.METRIC_HISTOGRAM):
            return abi.BAD_ARGUMENT
        mid = self.services.metrics.define(self.version.name, metric_type, self.mem.read_str(nptr, nsize))
        self.mem.write_u32(ret_id, mid)
        return abi.OK

    def proxy_increment_metric(self, mid: int, delta: int) -> int:
        return self.services.metrics.increment(mid, delta)

    def proxy_record_metric(self, mid: int, value: int) -> int:
        return self.services.metrics.record(mid, value)

    def proxy_get_metric(self, mid: int, ret: int) -> int:
        status, value = self.services.metrics.get(mid)
        if status == abi.OK:
            self.mem.write_u64(ret, max(0, int(value)) & 0xFFFFFFFFFFFFFFFF)
        return status

    # --- not available at this edge: the statuses the Rust/Go/C++ SDKs handle without panicking ---

    def proxy_grpc_call(self, *args: int) -> int:
        return abi.INTERNAL_FAILURE

    def proxy_grpc_stream(self, *args: int) -> int:
        return abi.INTERNAL_FAILURE

    def proxy_grpc_send(self, *args: int) -> int:
        return abi.NOT_FOUND

    def proxy_grpc_cancel(self, *args: int) -> int:
        return abi.NOT_FOUND

    def proxy_grpc_close(self, *args: int) -> int:
        return abi.NOT_FOUND

    def proxy_call_foreign_function(self, *args: int) -> int:
        return abi.NOT_FOUND

    def proxy_abort(self, *args: int) -> None:  # some builds import it for panics
        raise HostTrap("abort", "plugin aborted")


def unimplemented_stub(result: str | None) -> Any:
    """For an `env.proxy_*` import this host does not know (vendor extensions): UNIMPLEMENTED."""

    def call(*args: Any) -> int | None:
        return abi.UNIMPLEMENTED if result == "i32" else None

    return call


# The `env` imports this class implements: import name -> method.
MISC_IMPORTS: dict[str, str] = {
    "proxy_log": "proxy_log",
    "proxy_get_log_level": "proxy_get_log_level",
    "proxy_get_current_time_nanoseconds": "proxy_get_current_time_nanoseconds",
    "proxy_set_tick_period_milliseconds": "proxy_set_tick_period_milliseconds",
    "proxy_done": "proxy_done",
    "proxy_set_effective_context": "proxy_set_effective_context",
    "proxy_get_shared_data": "proxy_get_shared_data",
    "proxy_set_shared_data": "proxy_set_shared_data",
    "proxy_register_shared_queue": "proxy_register_shared_queue",
    "proxy_resolve_shared_queue": "proxy_resolve_shared_queue",
    "proxy_enqueue_shared_queue": "proxy_enqueue_shared_queue",
    "proxy_dequeue_shared_queue": "proxy_dequeue_shared_queue",
    "proxy_define_metric": "proxy_define_metric",
    "proxy_increment_metric": "proxy_increment_metric",
    "proxy_record_metric": "proxy_record_metric",
    "proxy_get_metric": "proxy_get_metric",
    "proxy_grpc_call": "proxy_grpc_call",
    "proxy_grpc_stream": "proxy_grpc_stream",
    "proxy_grpc_send": "proxy_grpc_send",
    "proxy_grpc_cancel": "proxy_grpc_cancel",
    "proxy_grpc_close": "proxy_grpc_close",
    "proxy_call_foreign_function": "proxy_call_foreign_function",
    "proxy_abort": "proxy_abort",
}
