"""Config for the top-level `plugins` list. (Extended by the wasm plugin work.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.config.reader import Section


def parse_plugins(secs: list[Section], base_dir: Path) -> list[Any]:
    if secs:
        raise secs[0].error("", "plugins are not supported yet")
    return []
