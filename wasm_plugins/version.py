"""One loaded version of a plugin: its compiled module, its settings, and the instance serving it,
replaced after a failure with exponential back-off while it keeps failing."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from wasm_plugins import pmetrics
from wasm_plugins.config import Limits, encode_config, merge_config
from wasm_plugins.embedder import Embedder
from wasm_plugins.engine import Compiled
from wasm_plugins.instance import PluginInstance
from wasm_plugins.module import ModuleInfo
from wasm_plugins.raw import WasmCallError
from wasm_plugins.services import parse_upstream

log = logging.getLogger("edgegw.plugins")

BACKOFF_BASE_S = 0.1
BACKOFF_MAX_S = 5.0


@dataclass
class VersionMeta:
    source: str  # policy | dir | admin
    description: str = ""
    loaded_at: float = field(default_factory=time.time)


class PluginVersion:
    def __init__(self, name: str, number: int, compiled: Compiled, info: ModuleInfo, limits: Limits,
                 vm_config: bytes, upstreams: dict[str, str], config_value: Any, meta: VersionMeta,
                 services: Any, root_id: str = "", vm_id: str = "", embedder: Embedder | None = None) -> None:
        self.name = name
        self.number = number
        self.compiled = compiled
        self.module = compiled.module
        self.sha256 = compiled.sha256
        self.info = info
        self.limits = limits
        self.vm_config = vm_config
        self.upstreams = upstreams
        self.targets = {name: parse_upstream(url) for name, url in upstreams.items()}
        self.config_value = config_value  # default configuration; routes may override it
        self.meta = meta
        self.services = services
        self.embedder = embedder  # its property namespace; None: Envoy's properties only
        self.properties = {"plugin_name": name, "plugin_root_id": root_id, "plugin_vm_id": vm_id,
                           "edgegw.plugin_version": str(number), "edgegw.plugin_sha256": self.sha256}
        self.instance: PluginInstance | None = None
        self.configs: set[bytes] = set()  # every configuration a route used: re-applied to new instances
        self.failures_in_row = 0
        self.retry_at = 0.0
        self.requests = 0
        self.failures = 0
        self._config_cache: dict[int, tuple[Any, bytes]] = {}

    def prepare(self, configs: set[bytes]) -> None:
        """Instantiate and configure for every known configuration: what a version must pass before
        it takes traffic. Raises WasmCallError."""
        self.configs |= configs
        self.instance = self._new_instance()

    def acquire(self) -> PluginInstance:
        inst = self.instance
        if inst is not None and not inst.broken:
            return inst
        if time.monotonic() < self.retry_at:
            raise WasmCallError("backoff", f"restarting after {self.failures_in_row} failures in a row")
        try:
            self.instance = self._new_instance()
        except WasmCallError as exc:
            self.instance_failed(None, exc.reason)
            raise
        return self.instance

    def _new_instance(self) -> PluginInstance:
        inst = PluginInstance(self, self.services)
        pmetrics.instances_total.labels(self.name).inc()
        try:
            for config in sorted(self.configs):
                inst.root_for(config)
        except BaseException:
            inst.release()
            raise
        return inst

    def root_for(self, inst: PluginInstance, config: bytes) -> int:
        if config not in self.configs:
            self.configs.add(config)
        return inst.root_for(config)

    def instance_failed(self, inst: PluginInstance | None, reason: str) -> None:
        """A trap poisons an instance: the next request gets a fresh one, after a growing pause if the
        failures keep coming (the spec's crash-loop protection)."""
        if inst is not None:
            if inst is self.instance:
                self.instance = None
            # Broken: nothing can run in it any more (paused streams get `instance_lost`), so its
            # memory goes now rather than when the last reference to it happens to die.
            inst.release() if inst.broken else inst.retire()
        self.failures_in_row += 1
        if self.failures_in_row > 1:
            delay = min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (self.failures_in_row - 2))
            self.retry_at = time.monotonic() + delay
            log.warning("plugin %s v%d failed %d times in a row (%s): next instance in %.1fs",
                        self.name, self.number, self.failures_in_row, reason, delay)

    def record(self, ok: bool) -> None:
        self.requests += 1
        if ok:
            self.failures_in_row = 0
        else:
            self.failures += 1

    def retire(self) -> None:
        """Out of service (replaced, rolled back, in the history, unloaded): its instance is released
        once the requests running on it end. The module stays, so a rollback only instantiates."""
        inst, self.instance = self.instance, None
        if inst is not None:
            inst.retire()

    def describe(self) -> dict[str, Any]:
        return {"version": self.number, "sha256": self.sha256, "abi": self.info.abi_version,
                "source": self.meta.source, "description": self.meta.description,
                "loaded_at": self.meta.loaded_at, "requests": self.requests, "failures": self.failures,
                "instance": ("broken: " + self.instance.broken) if self.instance and self.instance.broken
                else "warm" if self.instance else "none",
                "compiled_from_cache": self.compiled.from_cache,
                "compile_ms": round(self.compiled.seconds * 1000, 3)}

    def config_for(self, override: Any) -> bytes:
        """The configuration bytes a route's binding delivers to on_configure (merged with the default)."""
        key = id(override)
        hit = self._config_cache.get(key)
        if hit is not None and hit[0] is override:
            return hit[1]
        data = encode_config(merge_config(self.config_value, override))
        self._config_cache[key] = (override, data)
        return data
