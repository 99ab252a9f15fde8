"""The plugin keys of a policy file: the top-level `plugins:` list (parsed into the plugin host's
dataclasses; wasm_plugins.config documents the keys), `plugin_dir`, and each route's `plugins:`
chain of bindings."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from gateway.config.part import Frame
from gateway.config.reader import Section
from gateway.config.schema import GatewayConfig, RouteConfig
from wasm_plugins.config import FAILURE_POLICIES, NAME_RE, CanaryConfig, Limits, PluginConfig, encode_config

NAME = "plugins"
PHASES = ("auth", "routing", "preprocess", "response")


@dataclass(frozen=True)
class PluginSettings:
    """The top-level `plugins:` list and `plugin_dir` (absent both: the gateway runs no plugins)."""

    plugins: tuple[PluginConfig, ...] = ()
    plugin_dir: str | None = None  # resolved against the policy's folder


@dataclass(frozen=True)
class PluginBinding:
    """A plugin from the top-level `plugins` list, bound to a route at one phase."""

    name: str
    phase: str  # auth | routing | preprocess | response
    config: Any = None  # this route's plugin configuration (YAML data), merged over the plugin's


def plugin_settings(config: GatewayConfig) -> PluginSettings | None:
    """The policy's plugins; None when it configures none (no list, no `plugin_dir`)."""
    return cast("PluginSettings | None", config.sections.get(NAME))


def route_bindings(route: RouteConfig) -> tuple[PluginBinding, ...]:
    """A route's plugin chain, in order (empty: none)."""
    return cast("tuple[PluginBinding, ...]", route.sections.get(NAME, ()))


def parse_top_part(top: Section, frame: Frame) -> PluginSettings | None:
    plugins = tuple(parse_plugins(top.sections("plugins"), frame.base_dir))
    plugin_dir = top.str("plugin_dir", None)
    if plugin_dir:
        path = (frame.base_dir / plugin_dir).resolve()
        if path.exists() and not path.is_dir():
            raise top.error("plugin_dir", f"{path} is not a directory")
        plugin_dir = str(path)
    if not plugins and not plugin_dir:
        return None
    return PluginSettings(plugins, plugin_dir)


def parse_route_part(route: Section, frame: Frame) -> tuple[PluginBinding, ...] | None:
    """A route's `plugins:` bindings; each names a plugin of the top-level list."""
    settings = cast("PluginSettings | None", frame.top.get(NAME))
    names = {p.name for p in settings.plugins} if settings is not None else set()
    bindings = []
    for b in route.sections("plugins"):
        pname = b.str("name")
        if pname not in names:
            raise b.error("name", f"no plugin named {pname!r} in the top-level plugins list")
        bindings.append(PluginBinding(name=pname, phase=b.str("phase", choices=PHASES), config=b.raw("config", None)))
        b.done()
    return tuple(bindings) or None


def parse_plugins(secs: list[Section], base_dir: Path) -> list[PluginConfig]:
    """Parse and validate the `plugins` list (file paths are resolved against the policy's folder)."""
    out: list[PluginConfig] = []
    seen: set[str] = set()
    for sec in secs:
        cfg = _plugin(sec, base_dir)
        if cfg.name in seen:
            raise sec.error("name", f"duplicate plugin name {cfg.name!r}")
        seen.add(cfg.name)
        out.append(cfg)
    return out


def _plugin(sec: Section, base_dir: Path) -> PluginConfig:
    name = sec.str("name")
    if not NAME_RE.match(name):
        raise sec.error("name", "use letters, digits, '_', '-', '.' (at most 64)")
    file = sec.str("file", None)
    if file is not None:
        path = (base_dir / file).resolve()
        if not path.is_file():
            raise sec.error("file", f"file not found: {path} (build the examples with `make plugins`)")
        file = str(path)
    sha = sec.str("sha256", None)
    if sha is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha):
        raise sec.error("sha256", "expected 64 hex digits")
    config_value = sec.raw("config", None)
    cfg = PluginConfig(
        name=name,
        file=file,
        sha256=sha.lower() if sha else None,
        config=encode_config(config_value),
        config_value=config_value,
        vm_config=encode_config(sec.raw("vm_config", None)),
        root_id=sec.str("root_id", ""),
        vm_id=sec.str("vm_id", ""),
        failure_policy=sec.str("failure_policy", "fail_closed", choices=FAILURE_POLICIES),
        limits=_limits(sec.section("limits")),
        upstreams=_upstreams(sec.section("upstreams")),
        canary=_canary(sec.section("canary")),
    )
    sec.done()
    return cfg


def _limits(sec: Section) -> Limits:
    d = Limits()
    limits = Limits(
        fuel=sec.int("fuel", d.fuel, min=10_000, max=10_000_000_000),
        deadline_ms=sec.float("deadline_ms", d.deadline_ms, min=0.5, max=10_000.0),
        memory_mb=sec.int("memory_mb", d.memory_mb, min=1, max=4096),
        http_call_timeout_ms=sec.int("http_call_timeout_ms", d.http_call_timeout_ms, min=1, max=600_000),
        min_tick_ms=sec.int("min_tick_ms", d.min_tick_ms, min=1, max=3_600_000),
    )
    sec.done()
    return limits


def _upstreams(sec: Section) -> dict[str, str]:
    out = {}
    for key in list(sec.data):
        out[str(key)] = sec.url(key).rstrip("/")
    sec.done()
    return out


def _canary(sec: Section) -> CanaryConfig:
    d = CanaryConfig()
    canary = CanaryConfig(
        weight=sec.float("weight", d.weight, min=0.0, max=1.0),
        max_failure_rate=sec.float("max_failure_rate", d.max_failure_rate, min=0.0, max=1.0),
        max_status_shift=sec.float("max_status_shift", d.max_status_shift, min=0.0, max=1.0),
        min_requests=sec.int("min_requests", d.min_requests, min=1),
        window=sec.int("window", d.window, min=1),
        promote_after=sec.int("promote_after", d.promote_after, min=0),
        confidence=sec.float("confidence", d.confidence, min=0.5, max=0.999999),
        failed_looks=sec.int("failed_looks", d.failed_looks, min=1),
    )
    sec.done()
    return canary
