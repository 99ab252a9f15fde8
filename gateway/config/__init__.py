"""Configuration: the reader (`Section`, `ConfigError`), the frame every feature hangs off (`schema`),
the shape of a feature's keys (`part`) and the loader. `gateway.features.load_config(path)` returns a
validated, typed `GatewayConfig`."""

from gateway.config.reader import ConfigError, Section
from gateway.config.schema import GatewayConfig

__all__ = ["ConfigError", "GatewayConfig", "Section"]
