"""The pipeline stage that runs a route's plugin chain at one phase (auth, routing, preprocess,
response). Built by the gateway as `PluginPhaseStage(manager, phase)`."""

from __future__ import annotations

from typing import Any, cast

from gateway.context import RequestContext
from gateway.pipeline.stage import Stage
from gateway.plugins.config import NAME, PHASES, PluginBinding
from gateway.reply import Reply
from wasm_plugins.manager import settle_judged


class PluginPhaseStage(Stage):
    def __init__(self, manager: Any, phase: str) -> None:
        if phase not in PHASES:
            raise ValueError(f"unknown plugin phase {phase!r}")
        self.manager = manager
        self.phase = phase
        self.name = f"wasm_{phase}"
        # a route's bindings (by id, kept alive in the value) -> the bindings of this phase, in order
        self._chains: dict[int, tuple[object, tuple[PluginBinding, ...]]] = {}

    def _chain(self, ctx: RequestContext) -> tuple[PluginBinding, ...]:
        route = ctx.route
        bindings = route.sections.get(NAME) if route is not None else None
        if bindings is None:
            return ()
        hit = self._chains.get(id(bindings))
        if hit is None or hit[0] is not bindings:
            hit = (bindings, tuple(b for b in cast("tuple[PluginBinding, ...]", bindings) if b.phase == self.phase))
            self._chains[id(bindings)] = hit
        return hit[1]

    def enabled_for(self, ctx: RequestContext) -> bool:
        return bool(self._chain(ctx))

    async def on_request(self, ctx: RequestContext) -> Reply | None:
        if self.phase == "response":
            # response plugins read the body: have the forwarder keep it (non-streaming responses)
            ctx.collect_response = True
            return None
        trace = ctx.trace
        for binding in self._chain(ctx):
            if trace is None:
                reply: Reply | None = await self.manager.run(binding, ctx, self.phase)
            else:
                reply = await trace.plugin(binding.name, self._version(binding.name),
                                           self.manager.run(binding, ctx, self.phase))
            if reply is not None:
                return reply
        return None

    def _version(self, name: str) -> str:
        """For a span: the stable version's number and digest (and the canary's, while there is one)."""
        plugin = self.manager.plugins.get(name)
        if plugin is None:
            return "none"
        versions = [v for v in (plugin.stable, plugin.canary) if v is not None]
        return " canary ".join(f"v{v.number} sha256:{v.sha256[:12]}" for v in versions) or "none"

    async def on_response(self, ctx: RequestContext) -> None:
        if ctx.plugin_judged:
            settle_judged(ctx)
        if self.phase != "response":
            return
        for binding in self._chain(ctx):
            await self.manager.run(binding, ctx, self.phase)
