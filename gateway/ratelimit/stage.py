"""The rate-limit stage. (Replaced by the Redis rate-limit work.)"""

from __future__ import annotations

from gateway.config.schema import GatewayConfig
from gateway.stages.base import Stage


def build_ratelimit_stage(config: GatewayConfig) -> list[Stage]:
    """The stage (in a list) when any route has limits, else nothing."""
    return []
