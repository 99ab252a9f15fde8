"""A policy version: its text, the validated config, and how it is named (hash + load time)."""

from __future__ import annotations

import hashlib
import time
from collections import deque
from dataclasses import dataclass, field

from gateway.config.preflight import preflight
from gateway.config.reader import ConfigError
from gateway.config.schema import GatewayConfig
from gateway.features import load_config_text


def policy_hash(text: str) -> str:
    """The version name: the first 12 hex digits of the text's SHA-256 (what every worker agrees on)."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def validate_policy(text: str, file: str) -> GatewayConfig:
    """Exactly `edgegw check-config`'s checks; raises ConfigError with its text."""
    config = load_config_text(text, file)
    preflight(config)
    return config


def refusal_text(exc: ConfigError) -> str:
    """What check-config prints for an invalid file (without its `edgegw: ` prefix)."""
    return f"invalid configuration: {exc}"


@dataclass(frozen=True)
class PolicyVersion:
    text: str
    config: GatewayConfig
    version: str
    loaded_at: float
    origin: str  # start | file | sighup | admin | rollback

    @classmethod
    def of(cls, text: str, config: GatewayConfig, origin: str) -> PolicyVersion:
        return cls(text, config, policy_hash(text), time.time(), origin)

    def describe(self) -> dict[str, object]:
        return {"version": self.version, "loaded_at": self.loaded_at, "origin": self.origin,
                "routes": len(self.config.routes), "pools": len(self.config.pools)}


@dataclass
class Refusal:
    """The last policy refused: shown on the status page until a good version loads."""

    version: str
    origin: str
    message: str
    at: float = field(default_factory=time.time)

    def describe(self) -> dict[str, object]:
        return {"version": self.version, "origin": self.origin, "message": self.message, "at": self.at}


class History:
    """The good versions this worker ran, newest last (bounded), for rollback and the status page."""

    def __init__(self, keep: int = 10) -> None:
        self.versions: deque[PolicyVersion] = deque(maxlen=keep)

    def push(self, version: PolicyVersion) -> None:
        self.versions.append(version)

    def previous(self, current: str) -> PolicyVersion | None:
        """The newest good version whose hash differs from `current`."""
        for version in reversed(self.versions):
            if version.version != current:
                return version
        return None

    def describe(self) -> list[dict[str, object]]:
        return [v.describe() for v in reversed(self.versions)]
