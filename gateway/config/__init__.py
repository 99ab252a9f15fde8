"""Configuration: `load_config(path)` returns a validated, typed `GatewayConfig`."""

from gateway.config.loader import load_config
from gateway.config.reader import ConfigError, Section
from gateway.config.schema import GatewayConfig

__all__ = ["ConfigError", "GatewayConfig", "Section", "load_config"]
