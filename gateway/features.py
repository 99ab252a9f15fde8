"""The gateway's features, in order: one line each. A new feature is a package that declares a
`Feature` (`gateway.feature`) and one line here; nothing else names it.

The order is the order their top-level sections are read and their long-lived objects are built
and started (a feature may use those of the features above it); pipeline order comes from the
slots their stages take (`gateway.feature.SLOTS`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from gateway.auth.feature import AUTH
from gateway.cache.feature import CACHE
from gateway.config import loader
from gateway.config.descriptions import FRAME
from gateway.config.part import ConfigPart
from gateway.config.schema import GatewayConfig
from gateway.feature import Feature
from gateway.media.feature import MEDIA
from gateway.plugins.feature import PLUGINS
from gateway.ratelimit.feature import RATELIMIT
from gateway.redis.feature import REDIS
from gateway.serving.feature import SERVING
from gateway.telemetry.feature import TELEMETRY
from gateway.upstream.feature import UPSTREAM

FEATURES: tuple[Feature[Any], ...] = (
    SERVING,
    AUTH,
    UPSTREAM,
    REDIS,
    RATELIMIT,
    CACHE,
    MEDIA,
    PLUGINS,
    TELEMETRY,
)

# Every part of the policy file: the frame's own keys, then each feature's.
PARTS: tuple[ConfigPart[Any, Any, Any], ...] = (FRAME, *(f.config for f in FEATURES))


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read, substitute `${VAR}` / `${VAR:-default}` and validate a gateway policy file."""
    return loader.load_config(path, PARTS)


def load_config_text(text: str, file: str) -> GatewayConfig:
    """Validate policy `text` as if read from `file` (errors name it; relative paths resolve beside it)."""
    return loader.load_config_text(text, file, PARTS)


def parse_config(data: Any, file: str, base_dir: Path | None = None) -> GatewayConfig:
    """Validate already parsed YAML `data` as if read from `file`."""
    return loader.parse_config(data, file, PARTS, base_dir)
