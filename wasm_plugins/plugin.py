"""A named plugin over time: the stable version serving traffic, an optional canary taking a share
of it, and the history that rollback walks back through."""

from __future__ import annotations

import logging
import random
import time
from typing import Any

from wasm_plugins import pmetrics
from wasm_plugins.canary import CanaryJudge
from wasm_plugins.config import CanaryConfig, PluginConfig
from wasm_plugins.version import PluginVersion

log = logging.getLogger("edgegw.plugins")

HISTORY = 5  # previous stable versions kept for rollback

class Plugin:
    def __init__(self, spec: PluginConfig) -> None:
        self.spec = spec
        self.name = spec.name
        self.stable: PluginVersion | None = None
        self.canary: PluginVersion | None = None
        self.canary_cfg: CanaryConfig = spec.canary
        self.judge: CanaryJudge | None = None  # while a canary runs
        self.history: list[PluginVersion] = []
        self.numbers = 0
        self.events: list[dict[str, Any]] = []  # recent operator-visible events (rollbacks, promotions)
        self.overrides: dict[int, Any] = {}  # per-route configuration overrides seen, by id

    def next_number(self) -> int:
        self.numbers += 1
        return self.numbers

    def pick(self) -> PluginVersion | None:
        """The version that serves this request."""
        canary = self.canary
        if canary is not None and random.random() < self.canary_cfg.weight:
            return canary
        return self.stable or canary

    def install(self, version: PluginVersion, canary: CanaryConfig | None = None) -> None:
        """Put a prepared version into service, at once or as a canary."""
        if canary is not None and self.stable is not None:
            if self.canary is not None:
                self.canary.retire()
            self.canary, self.canary_cfg = version, canary
            self.judge = CanaryJudge(canary)
        else:
            if self.stable is not None:
                self.stable.retire()  # kept for rollback as a module: no instance, no memory
                self.history.append(self.stable)
                self._trim()
            if self.canary is not None and self.canary is not version:
                self.canary.retire()
            self.stable, self.canary, self.judge = version, None, None
        self._gauges()

    def promote(self) -> PluginVersion:
        if self.canary is None:
            raise LookupError("no canary to promote")
        canary = self.canary
        self.canary = None
        self.install(canary)
        self._event("promoted", canary)
        return canary

    def rollback(self, reason: str = "manual") -> PluginVersion | None:
        """Drop the canary if there is one, else go back to the previous stable version."""
        dropped: PluginVersion | None
        if self.canary is not None:
            dropped = self.canary
            dropped.retire()
            self.canary = self.judge = None
            self._event(f"rolled back canary ({reason})", dropped)
        elif self.history:
            dropped = self.stable
            self.stable = self.history.pop()
            if dropped is not None:
                dropped.retire()
            self._event(f"rolled back to v{self.stable.number} ({reason})", dropped)
        else:
            raise LookupError("no earlier version to roll back to")
        pmetrics.rollbacks_total.labels(self.name, "canary" if reason != "manual" else "manual").inc()
        self._gauges()
        return self.stable

    def remove(self) -> None:
        for v in (self.stable, self.canary, *self.history):
            if v is not None:
                v.retire()
        self.stable = self.canary = None
        self.history.clear()
        self._gauges()

    def record(self, version: PluginVersion, ok: bool) -> None:
        version.record(ok)

    def observe(self, version: PluginVersion, route: str, outcome: int) -> None:
        """While a canary runs: how a request this version handled on `route` was answered (a bit set
        of LOCAL, C4XX, C5XX, FAILED: `wasm_plugins.canary`), for the canary's judge, which compares
        the canary with the stable version route by route. A plugin's own answers are not failures,
        but a canary that answers 403 to everything is not healthy either."""
        judge = self.judge
        if judge is None or (version is not self.canary and version is not self.stable):
            return
        decided = judge.observe(version is self.canary, route, outcome)
        if decided is None:
            return
        kind, why = decided
        if kind == "promote":
            log.info("plugin %s: canary v%d promoted: %s", self.name, version.number, why)
            self.promote()
        else:
            log.warning("plugin %s: canary v%d rolled back: %s", self.name, version.number, why)
            self.rollback(why)

    def _trim(self) -> None:
        while len(self.history) > HISTORY:
            self.history.pop(0).retire()

    def _event(self, what: str, version: PluginVersion | None) -> None:
        self.events.append({"at": time.time(), "event": what,
                            "version": version.number if version is not None else None})
        del self.events[:-20]

    def _gauges(self) -> None:
        pmetrics.active_version.labels(self.name, "stable").set(self.stable.number if self.stable else 0)
        pmetrics.active_version.labels(self.name, "canary").set(self.canary.number if self.canary else 0)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "failure_policy": self.spec.failure_policy,
            "stable": self.stable.describe() if self.stable else None,
            "canary": ({**self.canary.describe(), "weight": self.canary_cfg.weight}
                       if self.canary else None),
            "history": [v.describe() for v in reversed(self.history)],
            "events": self.events,
        }
