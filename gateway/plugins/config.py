"""The top-level `plugins:` list of a policy file, parsed into the plugin host's dataclasses
(wasm_plugins.config documents the keys)."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.config.reader import Section
from wasm_plugins.config import FAILURE_POLICIES, NAME_RE, CanaryConfig, Limits, PluginConfig, encode_config


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
