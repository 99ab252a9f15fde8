"""Config for per-route response caching. (Extended by the response-cache work.)"""

from __future__ import annotations

from typing import Any

from gateway.config.reader import Section


def parse_cache_rule(sec: Section) -> Any:
    raise sec.error("", "cache rules are not supported yet")
