"""Fixtures for the plugin tests: the example plugins built from source once per session, a private
compiled-module cache, and helpers to run a gateway with plugins bound to its route."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from testkit.harness import ROOT

PLUGIN_DIR = ROOT / "build" / "plugins"


@pytest.fixture(scope="session")
def plugins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """name -> .wasm path, built by the same entry point as `make plugins`."""
    from wasm_plugins.build import build_all

    os.environ["EDGEGW_PLUGIN_CACHE_DIR"] = str(tmp_path_factory.mktemp("module-cache"))
    os.environ["EDGEGW_PLUGIN_POLL_S"] = "0.2"
    return build_all(PLUGIN_DIR)


@pytest.fixture(scope="session")
def own_plugins(plugins: dict[str, Path]) -> dict[str, Path]:
    """The tests' own plugins (`tests/plugins/wasm/`): each reproduces one SDK's contract with the
    host or one misbehaviour, built from source like the examples."""
    from wasm_plugins.build import build_tree

    return build_tree(ROOT / "tests" / "plugins" / "wasm", PLUGIN_DIR / "tests")


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


ROUTER_CONFIG = {"rules": ["header:x-partner-tier=premium->premium", "claim:tier=gold->premium",
                           "tenant=acme->premium"], "default": "default"}
AUTH_CONFIG = {"keys": ["key-alpha|partner-a|acme|premium", "key-beta|partner-b|globex|default"],
               "hmac": ["partner-c|c-secret|initech|default"], "max_skew_s": 300}
REDACT_CONFIG = {"max_tokens": 16}


# Generous for well-behaved plugins: the deadline is wall-clock, and CI machines are shared.
RELAXED = {"deadline_ms": 100}


def plugin_entry(name: str, path: Path | None = None, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "limits": dict(RELAXED), **extra}
    if path is not None:
        entry["file"] = str(path)
    return entry
