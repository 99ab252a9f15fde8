"""The gateway as the plugin host's embedder (wasm_plugins.embedder.Embedder), and the manager it
creates with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.config.reader import ConfigError
from gateway.errors import GatewayError
from gateway.feature import StateKey
from gateway.ingress.api import SPECS
from gateway.plugins.config import PluginSettings
from gateway.plugins.properties import NAMESPACE, get_edgegw, set_edgegw
from gateway.plugins.replies import failure_error, local_reply
from wasm_plugins.config import PluginConfig
from wasm_plugins.manager import PluginManager
from wasm_plugins.state import StreamState


class GatewayEmbedder:
    """Local answers become the gateway's responses (or GatewayErrors in the response phase),
    failures GatewayErrors; `:path` changes keep each endpoint's upstream path; `edgegw.*` properties."""

    namespace = NAMESPACE
    # the functions themselves (no method frame): plugins read these per request
    get_property = staticmethod(get_edgegw)
    set_property = staticmethod(set_edgegw)

    def upstream_path(self, path: str) -> str:
        return SPECS[path].upstream_path

    def local_reply(self, plugin: str, st: StreamState, phase: str) -> Any:
        return local_reply(plugin, st, phase)

    def failure(self, plugin: str, reason: str, unavailable: bool) -> GatewayError:
        return failure_error(plugin, reason, unavailable)


MANAGER: StateKey[PluginManager] = StateKey("plugins")  # the plugins feature's long-lived object


def plugin_manager(plugins: tuple[PluginConfig, ...], plugin_dir: str | None) -> PluginManager:
    """The plugin manager of one gateway worker."""
    return PluginManager(plugins, plugin_dir, GatewayEmbedder())


def manager_for(settings: PluginSettings, source: str) -> PluginManager:
    """The plugin manager a policy's plugin settings describe (`plugin_dir` created when missing)."""
    ensure_plugin_dir(settings.plugin_dir, source)
    return plugin_manager(settings.plugins, settings.plugin_dir)


def ensure_plugin_dir(plugin_dir: str | None, source: str) -> bool:
    """Create `plugin_dir` when it is missing (uploads are written there); True if it was created.

    An unusable path is a configuration error naming the file and key, not an error on every upload.
    """
    if not plugin_dir:
        return False
    path = Path(plugin_dir)
    if path.is_dir():
        return False
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(source, "plugin_dir", f"cannot create {path}: {exc.strerror}") from None
    return True
