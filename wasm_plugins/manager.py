"""The plugin manager of one gateway worker: loads versions (policy files, the watched directory,
the admin API), keeps them serving, and runs a route's plugin binding for a request phase."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from time import perf_counter
from typing import Any

from wasm_plugins import pmetrics
from wasm_plugins.canary import FAILED, outcome
from wasm_plugins.config import CanaryConfig, PluginConfig
from wasm_plugins.embedder import Embedder, RequestView
from wasm_plugins.engine import CompileError, compile_module
from wasm_plugins.errors import PluginLoadError
from wasm_plugins.module import inspect
from wasm_plugins.plugin import Plugin
from wasm_plugins.raw import WasmCallError
from wasm_plugins.runner import run_request, run_response
from wasm_plugins.services import Services
from wasm_plugins.version import PluginVersion, VersionMeta
from wasm_plugins.watcher import DirWatcher

log = logging.getLogger("edgegw.plugins")

_UNSET: Any = object()
_UNAVAILABLE = ("not_loaded", "backoff")


class PluginManager:
    """Constructed by the embedder as `PluginManager(plugins, plugin_dir, embedder)` (the gateway:
    gateway/plugins/embedder.py)."""

    def __init__(self, plugins: tuple[PluginConfig, ...], plugin_dir: str | None, embedder: Embedder) -> None:
        self.plugins: dict[str, Plugin] = {p.name: Plugin(p) for p in plugins}
        self.declared = frozenset(self.plugins)
        self.plugin_dir = Path(plugin_dir) if plugin_dir else None
        self.embedder = embedder
        self.services = Services()
        self.watcher: DirWatcher | None = None
        self._lock: asyncio.Lock | None = None
        self._tallies: dict[tuple[str, str], pmetrics.PhaseTally] = {}  # per-request metrics, batched

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every plugin the policy names a file for (failing start-up on a bad one), then the
        plugin directory, then start watching it."""
        for plugin in list(self.plugins.values()):
            if plugin.spec.file:
                data = Path(plugin.spec.file).read_bytes()
                try:
                    await self.load(plugin.name, data, source="policy")
                except PluginLoadError as exc:
                    raise RuntimeError(f"plugin {plugin.name!r} ({plugin.spec.file}): {exc}") from None
        if self.plugin_dir is not None:
            self.watcher = DirWatcher(self, self.plugin_dir)
            await self.watcher.scan()
            self.watcher.start()

    async def stop(self) -> None:
        if self.watcher is not None:
            await self.watcher.stop()
        for plugin in self.plugins.values():
            plugin.remove()
        await self.services.close()

    # --- loading ----------------------------------------------------------------------------------

    async def load(self, name: str, data: bytes, *, source: str, sha256: str | None = None,
                   canary: float | None = None, config: Any = _UNSET, description: str = "") -> PluginVersion:
        """Compile, link, start and configure a new version, then put it into service (or into a canary
        share of it). Raises PluginLoadError and leaves the serving version alone on any failure."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            plugin = self.plugins.get(name) or Plugin(PluginConfig(name=name))
            try:
                compiled = await asyncio.to_thread(compile_module, data)
            except CompileError as exc:
                raise self._rejected(plugin, source, f"does not compile: {exc}") from None
            for pin, what in ((sha256, "the upload's sha256"), (plugin.spec.sha256, "the policy's sha256 pin")):
                if pin and compiled.sha256 != pin.lower():
                    raise self._rejected(plugin, source, f"sha256 {compiled.sha256} does not match {what} {pin}")
            info = inspect(compiled.module)
            if not info.ok:
                raise self._rejected(plugin, source, "; ".join(info.problems))
            spec = plugin.spec
            version = PluginVersion(name, plugin.next_number(), compiled, info, spec.limits, spec.vm_config,
                                    spec.upstreams, spec.config_value if config is _UNSET else config,
                                    VersionMeta(source, description), self.services, root_id=spec.root_id,
                                    vm_id=spec.vm_id, embedder=self.embedder)
            configs = {version.config_for(None)} | {version.config_for(o) for o in plugin.overrides.values()}
            try:
                version.prepare(configs)
            except WasmCallError as exc:
                raise self._rejected(plugin, source, f"failed its start-up checks ({exc.reason}): {exc}") from None
            canary_cfg = None
            if canary is not None and plugin.stable is not None:
                canary_cfg = CanaryConfig(**{**plugin.spec.canary.__dict__, "weight": canary})
            plugin.install(version, canary_cfg)
            self.plugins[name] = plugin
            pmetrics.loads_total.labels(name, source, "ok").inc()
            log.info("plugin %s v%d loaded from %s (sha256 %s, abi %s, %s, %.1f ms)%s", name, version.number,
                     source, version.sha256[:12], info.abi_version, "cached" if compiled.from_cache else "compiled",
                     compiled.seconds * 1000, f" as a canary at {canary:.0%}" if canary_cfg else "")
            return version

    def _rejected(self, plugin: Plugin, source: str, why: str) -> PluginLoadError:
        pmetrics.loads_total.labels(plugin.name, source, "error").inc()
        log.error("plugin %s: new version rejected (%s): %s", plugin.name, source, why)
        return PluginLoadError(why)

    def rollback(self, name: str) -> PluginVersion | None:
        return self._get(name).rollback("manual")

    def promote(self, name: str) -> PluginVersion:
        return self._get(name).promote()

    def remove(self, name: str) -> None:
        """Unload every version. A plugin the policy declares stays known: its routes then follow its
        failure policy; one added at runtime is forgotten."""
        self._get(name).remove()
        if name not in self.declared:
            del self.plugins[name]
        log.info("plugin %s removed", name)

    def _get(self, name: str) -> Plugin:
        plugin = self.plugins.get(name)
        if plugin is None:
            raise LookupError(f"no plugin named {name!r}")
        return plugin

    def describe(self) -> list[dict[str, Any]]:
        return [p.describe() for p in self.plugins.values()]

    # --- the request path ---------------------------------------------------------------------------

    async def run(self, binding: Any, ctx: RequestView, phase: str) -> Any:
        """Run one binding of a route for `phase`. Returns the embedder's `local_reply` when the plugin
        answered locally, else None; raises the embedder's `failure` when it failed under fail_closed."""
        name = binding.name
        plugin = self.plugins.get(name)
        version = plugin.pick() if plugin is not None else None
        if plugin is None or version is None:
            return self._failed(plugin, name, None, WasmCallError("not_loaded", "no version is loaded"))
        started = perf_counter()
        inst = st = None
        try:
            inst = version.instance
            if inst is None or inst.broken:
                inst = version.acquire()
            # The root context for this binding's configuration: remembered by the instance per
            # binding, so the configuration is merged and looked up once, not per request.
            config = binding.config
            bound = inst.bound.get(id(config))
            if bound is not None and bound[0] is config:
                root = bound[1]
            else:
                if config is not None and id(config) not in plugin.overrides:
                    plugin.overrides[id(config)] = config
                root = version.root_for(inst, version.config_for(config))
                inst.bound[id(config)] = (config, root)
            st = await (run_response(inst, root, ctx) if phase == "response"
                        else run_request(inst, root, ctx, self.embedder))
        except WasmCallError as exc:
            if inst is not None and inst.broken:
                version.instance_failed(inst, exc.reason)
            plugin.record(version, False)
            if plugin.judge is not None:
                plugin.observe(version, ctx.route.name if ctx.route is not None else "", FAILED)
            return self._failed(plugin, name, version, exc)
        finally:
            elapsed = perf_counter() - started
            tally = self._tallies.get((name, phase))
            if tally is None:
                tally = self._tallies[(name, phase)] = pmetrics.PhaseTally(name, phase)
            tally.add(elapsed, st.fuel if st is not None else 0)  # fuel: of completed runs only
        plugin.record(version, True)
        if plugin.judge is not None:
            _judge(plugin, version, ctx, st, phase)
        return self.embedder.local_reply(name, st, phase) if st.local_response is not None or st.reset else None

    def _failed(self, plugin: Plugin | None, name: str, version: PluginVersion | None,
                exc: WasmCallError) -> None:
        pmetrics.failures_by.get(name, exc.reason).inc()
        where = f" v{version.number}" if version is not None else ""
        fail_open = plugin is not None and plugin.spec.failure_policy == "fail_open"
        log.warning("plugin %s%s failed (%s): %s%s", name, where, exc.reason, exc,
                    "; skipped (fail_open)" if fail_open else "")
        if fail_open:
            pmetrics.skipped_total.labels(name).inc()
            return None
        raise self.embedder.failure(name, exc.reason, exc.reason in _UNAVAILABLE)


def _judge(plugin: Plugin, version: PluginVersion, ctx: RequestView, st: Any, phase: str) -> None:
    """Note how this request was answered, for canary judging (only while the plugin has a canary)."""
    route = ctx.route.name if ctx.route is not None else ""
    local = st.local_response
    if local is not None or st.reset:
        plugin.observe(version, route, outcome(local.status if local is not None else 502, True))
    elif phase == "response":
        plugin.observe(version, route, outcome(ctx.status, False))
    else:  # the status is known once the upstream answered: PluginPhaseStage.on_response settles it
        if ctx.plugin_judged is None:
            ctx.plugin_judged = []
        ctx.plugin_judged.append((plugin, version, route))


def settle_judged(ctx: RequestView) -> None:
    """Judge the requests this one's plugins let through, now that its final status is known."""
    judged, ctx.plugin_judged = ctx.plugin_judged or [], None
    for plugin, version, route in judged:
        plugin.observe(version, route, outcome(ctx.status, False))
