"""Notice a changed policy file by polling: robust across editors' rename-over, bind mounts and a
Kubernetes ConfigMap's symlink swap (`..data` -> a new directory), which inotify on the file misses."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable

log = logging.getLogger("edgegw.policy")


FileState = tuple[int, int, int, int]


def file_state(path: str) -> FileState | None:
    """(device, inode, size, mtime) of what `path` resolves to now (symlinks followed); None if absent."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return stat_state(st)


def stat_state(st: os.stat_result) -> FileState:
    """The state `file_state` reports for a file with this stat."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class FileWatcher:
    """Calls `changed()` when the file behind `path` looks different (the caller compares contents)."""

    def __init__(self, path: str, changed: Callable[[], Awaitable[object]], interval_s: float = 0.25) -> None:
        self.path = path
        self.changed = changed
        self.interval_s = interval_s
        self.state = file_state(path)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            state = file_state(self.path)
            if state is None or state == self.state:
                continue  # a missing file (mid-swap) keeps the running version
            self.state = state
            try:
                await self.changed()
            except Exception:
                log.exception("policy reload after a file change failed")
