"""WASI preview1 for plugins: stdout/stderr go to the log, clocks, randomness, empty args and
environment, `proc_exit`. No filesystem, sockets or environment: those calls answer with an error
code (never a trap), as a WASI runtime without preopened directories would."""

from __future__ import annotations

import os
import time
from typing import Any

from wasm_plugins.raw import HostTrap

ESUCCESS, EBADF, EINVAL, ENOSYS, ENOTSUP, ESPIPE, ENOTCAPABLE = 0, 8, 28, 52, 58, 70, 76

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
        chunks = []
        for i in range(iovs_len):
            ptr = self.mem.read_u32(iovs + 8 * i)
            size = self.mem.read_u32(iovs + 8 * i + 4)
            chunks.append(self.mem.read(ptr, size))
        data = b"".join(chunks)
        text = data.decode("utf-8", "replace").rstrip("\n")
        if text:
            level = 4 if fd == 2 else 2
            if data[:1] == b"[":
                level = _SDK_LEVELS.get(data.split(b"]", 1)[0] + b"]", level)
            self.plugin_log(level, text)
        self.mem.write_u32(nwritten, len(data))
        return ESUCCESS

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

    wasi_args_sizes_get = wasi_environ_sizes_get
    wasi_args_get = wasi_environ_get

    def wasi_sched_yield(self) -> int:
        return ESUCCESS

    def wasi_proc_exit(self, code: int) -> None:
        raise ProcExit(code)

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
        return self.mem.read(ptr, size).decode("utf-16-le", "replace")


def denied(name: str) -> Any:
    """A WASI call without a capability here: answers its errno."""
    errno = _DENIED.get(name, ENOSYS)

    def call(*args: Any) -> int:
        return errno

    return call


def wasi_names() -> set[str]:
    return set(_DENIED) | {n[5:] for n in dir(WasiHost) if n.startswith("wasi_")}
