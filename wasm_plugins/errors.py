"""The plugin host's exceptions that cross module boundaries (the manager raises them, the watcher and
the embedder's admin API catch them)."""

from __future__ import annotations

from wasm_plugins.raw import HostTrap, WasmCallError

__all__ = ["HostTrap", "PluginLoadError", "WasmCallError"]


class PluginLoadError(Exception):
    """A version was rejected; the message says why. The previous version keeps serving."""
