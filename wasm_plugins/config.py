"""What a plugin is configured with, as frozen dataclasses (the gateway parses its policy's
`plugins:` list into them: gateway/plugins/config.py).

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
        canary: {weight: 0.1, max_failure_rate: 0.02, max_status_shift: 0.02, min_requests: 20, window: 100,
                 promote_after: 0, confidence: 0.99, failed_looks: 1}
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

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
    """How a new version is trialled: `weight` of traffic, judged route by route against the stable
    version by the one canary judge (`wasm_plugins.canary`, `edgecore.judge`): rolled back when its
    failure rate exceeds stable's by more than `max_failure_rate`, or its share of local answers, 4xx
    or 5xx by more than `max_status_shift`, significantly at `confidence` (`failed_looks` looks in a
    row), once `min_requests` were seen; promoted after `promote_after` requests (0: only by
    `POST /admin/plugins/{name}/promote`). `window` is kept for old policies: the judge counts every
    request since the canary started."""

    weight: float = 0.1
    max_failure_rate: float = 0.02
    max_status_shift: float = 0.02
    min_requests: int = 20
    window: int = 100
    promote_after: int = 0
    confidence: float = 0.99  # of the canary: at most 1 - confidence of healthy canaries roll back
    failed_looks: int = 1


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
