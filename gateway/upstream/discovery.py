"""Endpoint discovery by DNS (headless Kubernetes services). Extended by the operator work."""

from __future__ import annotations

from typing import Any

from gateway.config.reader import Section


def parse_dns(sec: Section) -> Any:
    raise sec.error("", "dns discovery is not supported yet")
