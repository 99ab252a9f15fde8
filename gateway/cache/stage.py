"""The response-cache stage. (Replaced by the response-cache work.)"""

from __future__ import annotations

from gateway.config.schema import GatewayConfig
from gateway.stages.base import Stage


def build_cache_stage(config: GatewayConfig) -> list[Stage]:
    """The stage (in a list) when any route caches, else nothing."""
    return []
