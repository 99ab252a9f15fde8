"""The top-level `plugins:` list of a policy file, parsed into frozen dataclasses.

    plugins:
      - name: partner-auth
        file: ../build/plugins/auth_apikey.wasm   # optional: may come from plugin_dir or the admin API
        sha256: 3f1c...                           # optional pin: every version must have this hash
        config: {header: x-api-key, keys: {...}}  # delivered through proxy_on_configure (JSON)
        vm_config: ""                             # delivered through proxy_on_vm_start
        root_id: ""                               # the `plugin_root_id` property (Envoy's default: "")
        vm_id: ""                                 # the `plugin_vm_id` property
        failure_policy: fail_closed               # fail_closed (5xx) | fail_open (skip the plugin)
        limits: {fuel: 50000000, deadline_ms: 10, memory_mb: 32, http_call_timeout_ms: 2000, min_tick_ms: 100}
        upstreams: {authz: http://127.0.0.1:9000} # proxy_http_call targets
        canary: {weight: 0.1, max_failure_rate: 0.2, max_status_shift: 0.2, min_requests: 20, window: 100,
                 promote_after: 0}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config.reader import Section

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FAILURE_POLICIES = ("fail_closed", "fail_open")


@dataclass(frozen=True)
class Limits:
    """The sandbox of one plugin: applied to every callback (fuel, deadline) or instance (memory)."""

    fuel: int = 50_000_000
    deadline_ms: float = 10.0
    memory_mb: int = 32
    http_call_timeout_ms: int = 2000
    min_tick_ms: int = 100  # shorter tick periods a plugin asks for are raised to this


@dataclass(frozen=True)
class CanaryConfig:
    """How a new version is trialled: `weight` of traffic; rolled back past `max_failure_rate`
    (over the last `window` requests, once `min_requests` were seen), or when on some route its
    share of local answers, 4xx or 5xx exceeds the stable version's there by more than
    `max_status_shift`; promoted after `promote_after` requests (0: only by
    `POST /admin/plugins/{name}/promote`)."""

    weight: float = 0.1
    max_failure_rate: float = 0.2
    max_status_shift: float = 0.2
    min_requests: int = 20
    window: int = 100
    promote_after: int = 0


@dataclass(frozen=True)
class PluginConfig:
    name: str
    file: str | None = None
    sha256: str | None = None
    config: bytes = b""
    config_value: Any = field(default=None, hash=False, compare=False)  # parsed, for per-route merges
    vm_config: bytes = b""
    root_id: str = ""  # Envoy's default when a filter names none; the C++ SDK registers under ""
    vm_id: str = ""
    failure_policy: str = "fail_closed"
    limits: Limits = Limits()
    upstreams: dict[str, str] = field(default_factory=dict, hash=False)
    canary: CanaryConfig = CanaryConfig()


def encode_config(value: Any) -> bytes:
    """Plugin configuration bytes: strings verbatim, anything else as compact JSON."""
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def merge_config(base: Any, override: Any) -> Any:
    """A route's `config` overrides the plugin's: mappings merge shallowly, anything else replaces."""
    if override is None:
        return base
    if isinstance(base, dict) and isinstance(override, dict):
        return {**base, **override}
    return override


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
    )
    sec.done()
    return canary
