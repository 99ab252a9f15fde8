"""Wasm plugins as a feature: `plugins:`, `plugin_dir` and `routes[].plugins`, the plugin manager
(kept across reloads while the plugin settings are unchanged: its instances live on), a stage per
phase, `/admin/plugins` and the plugins' status section."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.config.part import LIVE, ConfigPart, Reload
from gateway.config.schema import GatewayConfig
from gateway.feature import Assembly, Feature, Placed
from gateway.plugins.admin import plugin_routes
from gateway.plugins.config import (
    NAME,
    PHASES,
    PluginBinding,
    PluginSettings,
    parse_route_part,
    parse_top_part,
    plugin_settings,
)
from gateway.plugins.docs import DOCS
from gateway.plugins.embedder import manager_for
from gateway.plugins.stage import PluginPhaseStage
from gateway.plugins.status import plugins_status
from wasm_plugins.manager import PluginManager

PART: ConfigPart[PluginSettings, tuple[PluginBinding, ...], None] = ConfigPart(
    NAME,
    reload={
        "plugins": Reload(LIVE, "a new plugin manager (instances of every plugin start afresh); turning plugins on "
                                "or off entirely changes the /admin/plugins endpoints only at restart"),
        "plugin_dir": Reload(LIVE, "as `plugins`"),
    },
    docs=DOCS,
    top=parse_top_part,
    top_keys=("plugins", "plugin_dir"),
    route=parse_route_part,
    route_keys=("plugins",),
)


def _manager(assembly: Assembly) -> PluginManager | None:
    settings = plugin_settings(assembly.config)
    return manager_for(settings, assembly.config.source) if settings is not None else None


def _unchanged(config: GatewayConfig) -> object:
    return plugin_settings(config)


def _stages(assembly: Assembly, manager: PluginManager | None) -> Sequence[Placed]:
    if manager is None:
        return []
    return [(f"plugins:{phase}", PluginPhaseStage(manager, phase)) for phase in PHASES]


PLUGINS: Feature[PluginManager] = Feature(PART, state=_manager, unchanged=_unchanged, stages=_stages,
                                          admin_routes=plugin_routes, status=plugins_status)
