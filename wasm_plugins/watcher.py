"""The watched plugin directory: `NAME.wasm` (or `NAME.wat`) files are plugin versions.

A new or changed file is loaded like an upload (compile, link, start, configure, then serve); a bad
file is logged and the serving version stays. A deleted file unloads the plugin. Write files
atomically (write elsewhere, then rename) so a half-written file is never seen; one that is seen
simply fails to load and is retried when it changes again. Polls every EDGEGW_PLUGIN_POLL_S (1 s).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from pathlib import Path
from typing import Any, Protocol

from edgecore.files import write_atomic
from wasm_plugins.config import NAME_RE
from wasm_plugins.engine import CompileError, to_binary
from wasm_plugins.errors import PluginLoadError

log = logging.getLogger("edgegw.plugins")


class Loader(Protocol):
    """What the watcher drives: the plugin manager (which owns the watcher, so it is not imported)."""

    plugins: dict[str, Any]

    async def load(self, name: str, data: bytes, *, source: str, description: str = "") -> Any: ...

    def remove(self, name: str) -> None: ...


class DirWatcher:
    def __init__(self, manager: Loader, directory: Path) -> None:
        self.manager = manager
        self.dir = directory
        self.poll_s = float(os.environ.get("EDGEGW_PLUGIN_POLL_S", "1.0"))
        self.seen: dict[str, tuple[int, int]] = {}  # name -> (mtime_ns, size) last handled
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.scan()
            except Exception:  # noqa: BLE001 - the watcher must survive anything a directory throws at it
                log.exception("plugin directory scan failed")

    def _files(self) -> dict[str, Path]:
        found: dict[str, Path] = {}
        try:
            entries = sorted(self.dir.iterdir())
        except OSError:
            return found
        for path in entries:
            if path.suffix in (".wasm", ".wat") and NAME_RE.match(path.stem) and not path.name.startswith("."):
                found.setdefault(path.stem, path)
        return found

    async def scan(self) -> None:
        files = self._files()
        for name, path in files.items():
            try:
                st = path.stat()
            except OSError:
                continue
            stamp = (st.st_mtime_ns, st.st_size)
            if self.seen.get(name) == stamp:
                continue
            self.seen[name] = stamp
            data = path.read_bytes()
            plugin = self.manager.plugins.get(name)
            if plugin is not None and plugin.stable is not None and _same(plugin.stable, data):
                continue  # our own publish, or a touch
            try:
                await self.manager.load(name, data, source="dir", description=str(path))
            except PluginLoadError as exc:
                log.error("plugin file %s rejected: %s", path, exc)
        for name in list(self.seen):
            if name not in files:
                del self.seen[name]
                plugin = self.manager.plugins.get(name)
                if plugin is not None and plugin.stable is not None:
                    self.manager.remove(name)

    def publish(self, name: str, binary: bytes) -> None:
        """Write an admin change into the directory (atomically) so other workers converge on it."""
        target = self.dir / f"{name}.wasm"
        try:
            write_atomic(target, binary, prefix=".upload-")
            st = target.stat()
            self.seen[name] = (st.st_mtime_ns, st.st_size)
        except OSError as exc:
            log.error("cannot write %s: %s", target, exc)

    def unpublish(self, name: str) -> None:
        for suffix in (".wasm", ".wat"):
            try:
                (self.dir / f"{name}{suffix}").unlink()
            except FileNotFoundError:
                pass
        self.seen.pop(name, None)


def _same(version: Any, data: bytes) -> bool:
    try:
        same: bool = hashlib.sha256(to_binary(data)).hexdigest() == version.sha256
        return same
    except CompileError:
        return False
