"""WASI preview1 for plugins: stdout/stderr go to the log, clocks, randomness, empty args and
environment, `proc_exit`. No filesystem, sockets or environment: those calls answer with an error
code (never a trap), as a WASI runtime without preopened directories would."""

from __future__ import annotations

import os
import struct
import time
from typing import Any

from wasm_plugins.raw import HostTrap

ESUCCESS, EBADF, EINVAL, ENOSYS, ENOTSUP, ESPIPE, ENOTCAPABLE = 0, 8, 28, 52, 58, 70, 76
_MAX_LINE = 4096  # bytes of one log line; longer output is logged in pieces

# poll_oneoff's records (preview1): a subscription is 48 bytes (userdata u64, tag u8, then the
# clock or fd union at offset 16); an event is 32 (userdata u64, errno u16, type u8, then fd data).
_SUBSCRIPTION, _EVENT, _EVENTTYPE_CLOCK = 48, 32, 0
_SUB_HEAD = struct.Struct("<QB")
_EVENT_HEAD = struct.Struct("<QHB")

# Everything in wasi_snapshot_preview1 that has no capability here, with the errno it answers.
_DENIED = {
    **dict.fromkeys(("fd_advise", "fd_allocate", "fd_datasync", "fd_fdstat_set_flags", "fd_fdstat_set_rights",
                     "fd_filestat_get", "fd_filestat_set_size", "fd_filestat_set_times", "fd_pread", "fd_pwrite",
                     "fd_read", "fd_readdir", "fd_renumber", "fd_sync", "fd_tell", "fd_close",
                     "fd_prestat_get", "fd_prestat_dir_name"), EBADF),
    **dict.fromkeys(("path_create_directory", "path_filestat_get", "path_filestat_set_times", "path_link",
                     "path_open", "path_readlink", "path_remove_directory", "path_rename", "path_symlink",
                     "path_unlink_file"), ENOTCAPABLE),
    **dict.fromkeys(("sock_accept", "sock_recv", "sock_send", "sock_shutdown", "poll_oneoff", "proc_raise"),
                    ENOTSUP),
}


# The AssemblyScript SDK (@gcoredev/proxy-wasm-sdk-as) logs through WASI stdout, not proxy_log (its
# platform lacks proxy_log), as "[LEVEL]: text". Keep that level, else a plugin's errors land as info.
_SDK_LEVELS = {b"[TRACE]": 0, b"[DEBUG]": 1, b"[INFO]": 2, b"[WARN]": 3, b"[ERROR]": 4, b"[CRITICAL]": 5}


class ProcExit(HostTrap):
    """`proc_exit` unwinds the plugin; exit code 0 from `_start` is a normal end of `main`."""

    def __init__(self, code: int) -> None:
        super().__init__("exit", f"plugin called proc_exit({code})")
        self.code = code


class WasiHost:
    """Mixin for PluginInstance: `wasi_<name>` implements `wasi_snapshot_preview1.<name>`."""

    mem: Any
    plugin_log: Any

    def wasi_fd_write(self, fd: int, iovs: int, iovs_len: int, nwritten: int) -> int:
        if fd not in (1, 2):
            return EBADF
        mem = self.mem
        total = 0
        for i in range(iovs_len):
            ptr = mem.read_u32(iovs + 8 * i)
            size = mem.read_u32(iovs + 8 * i + 4)
            if size:
                self._stdio_write(fd, mem.read(ptr, size))
                total += size
        mem.write_u32(nwritten, total)
        return ESUCCESS

    # Runtimes write a line in pieces (Go's print: each argument, then the newline; libc's stderr is
    # unbuffered), so output is buffered per stream and each complete line becomes one log record.
    # A failure, proc_exit or release flushes what is left, so a panic's last words are not lost.
    _stdio: dict[int, bytearray] | None = None

    def _stdio_write(self, fd: int, data: bytes) -> None:
        if self._stdio is None:
            self._stdio = {1: bytearray(), 2: bytearray()}
        buf = self._stdio[fd]
        buf += data
        if b"\n" not in data and len(buf) < _MAX_LINE:
            return
        *lines, rest = bytes(buf).split(b"\n")
        buf[:] = rest
        for line in lines:
            self._stdio_line(fd, line)
        while len(buf) >= _MAX_LINE:  # a runaway line: logged in pieces, never held without bound
            self._stdio_line(fd, bytes(buf[:_MAX_LINE]))
            del buf[:_MAX_LINE]

    def _stdio_line(self, fd: int, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        if not text:
            return
        level = 4 if fd == 2 else 2
        if line[:1] == b"[":
            level = _SDK_LEVELS.get(line.split(b"]", 1)[0] + b"]", level)
        self.plugin_log(level, text)

    def flush_stdio(self) -> None:
        """Log what the plugin wrote without a final newline."""
        if self._stdio:
            for fd, buf in self._stdio.items():
                if buf:
                    line = bytes(buf)
                    buf.clear()
                    self._stdio_line(fd, line)

    def wasi_fd_fdstat_get(self, fd: int, out: int) -> int:
        if fd > 2:
            return EBADF
        # filetype character_device, no flags, no rights: enough for libc to treat stdio as a tty-less stream
        self.mem.write(out, bytes([2]) + bytes(23))
        return ESUCCESS

    def wasi_fd_seek(self, fd: int, offset: int, whence: int, out: int) -> int:
        return ESPIPE if fd <= 2 else EBADF

    def wasi_clock_time_get(self, clock_id: int, precision: int, out: int) -> int:
        if clock_id == 0:
            self.mem.write_u64(out, time.time_ns())
        elif clock_id in (1, 2, 3):
            self.mem.write_u64(out, time.monotonic_ns())
        else:
            return EINVAL
        return ESUCCESS

    def wasi_clock_res_get(self, clock_id: int, out: int) -> int:
        if clock_id > 3:
            return EINVAL
        self.mem.write_u64(out, 1000)
        return ESUCCESS

    def wasi_random_get(self, buf: int, size: int) -> int:
        if size > 1 << 20:
            return EINVAL
        self.mem.write(buf, os.urandom(size))
        return ESUCCESS

    def wasi_environ_sizes_get(self, count: int, size: int) -> int:
        self.mem.write_u32(count, 0)
        self.mem.write_u32(size, 0)
        return ESUCCESS

    def wasi_environ_get(self, environ: int, buf: int) -> int:
        return ESUCCESS


    def wasi_sched_yield(self) -> int:
        return ESUCCESS

    def wasi_poll_oneoff(self, subs: int, events: int, nsubs: int, nevents: int) -> int:
        """Clock subscriptions fire at once (a plugin callback must not sleep: its deadline is
        wall-clock), so Go's `usleep` and libc's `nanosleep` return immediately; fd subscriptions
        answer EBADF (there are no pollable descriptors). One event per subscription."""
        if nsubs == 0:
            return EINVAL
        if nsubs > 64:
            return ENOTSUP
        mem = self.mem
        out = bytearray(_EVENT * nsubs)
        for i in range(nsubs):
            sub = mem.read(subs + _SUBSCRIPTION * i, _SUBSCRIPTION)
            userdata, tag = _SUB_HEAD.unpack_from(sub)
            error = ESUCCESS if tag == _EVENTTYPE_CLOCK else EBADF
            _EVENT_HEAD.pack_into(out, _EVENT * i, userdata, error, tag)
        mem.write(events, bytes(out))
        mem.write_u32(nevents, nsubs)
        return ESUCCESS

    def wasi_proc_exit(self, code: int) -> None:
        self.flush_stdio()
        raise ProcExit(code)

    # Emscripten's standalone builds (the C++ SDK's toolchain) import these two from `env`, as
    # Envoy's host (proxy-wasm-cpp-host) provides them: memory growth needs no action here (the
    # host re-reads the memory's size on access), and there is one thread.
    def em_emscripten_notify_memory_growth(self, index: int) -> None:
        return None

    def em_pthread_equal(self, left: int, right: int) -> int:
        return int(left == right)

    # AssemblyScript's runtime imports (without the WASI shim): env.abort, env.trace, env.seed.
    def as_abort(self, msg: int, file: int, line: int, col: int) -> None:
        raise HostTrap("abort", f"abort: {self._as_string(msg)} at {self._as_string(file)}:{line}:{col}")

    def as_trace(self, msg: int, n: int, *args: float) -> None:
        self.plugin_log(2, f"trace: {self._as_string(msg)} {' '.join(str(a) for a in args[:n])}")

    def as_seed(self) -> float:
        return float(time.time_ns() % 1_000_000_007)

    def _as_string(self, ptr: int) -> str:
        if ptr < 4:
            return ""
        size = min(self.mem.read_u32(ptr - 4), 4096)
        text: str = self.mem.read(ptr, size).decode("utf-16-le", "replace")
        return text


def denied(name: str) -> Any:
    """A WASI call without a capability here: answers its errno."""
    errno = _DENIED.get(name, ENOSYS)

    def call(*args: Any) -> int:
        return errno

    return call


def wasi_names() -> set[str]:
    """Every WASI import this host answers: implemented, or denied with an errno."""
    return set(_DENIED) | set(WASI_IMPORTS)


# `env` imports that are not proxy-wasm calls: name -> the WasiHost method implementing it.
ENV_FUNCTIONS = {"abort": "as_abort", "trace": "as_trace", "seed": "as_seed",
                 "emscripten_notify_memory_growth": "em_emscripten_notify_memory_growth",
                 "pthread_equal": "em_pthread_equal"}


# The WASI imports WasiHost implements: import name -> method.
WASI_IMPORTS: dict[str, str] = {
    "fd_write": "wasi_fd_write",
    "fd_fdstat_get": "wasi_fd_fdstat_get",
    "fd_seek": "wasi_fd_seek",
    "clock_time_get": "wasi_clock_time_get",
    "clock_res_get": "wasi_clock_res_get",
    "random_get": "wasi_random_get",
    "environ_sizes_get": "wasi_environ_sizes_get",
    "environ_get": "wasi_environ_get",
    "args_sizes_get": "wasi_environ_sizes_get",  # no arguments either: the same answers
    "args_get": "wasi_environ_get",
    "sched_yield": "wasi_sched_yield",
    "poll_oneoff": "wasi_poll_oneoff",
    "proc_exit": "wasi_proc_exit",
}
