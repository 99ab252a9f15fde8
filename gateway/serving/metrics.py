"""Metrics of the listener: what it refused or cut off before a request reached the app."""

from __future__ import annotations

from prometheus_client import Counter

from gateway.metrics import registry

refusals_total = Counter(
    "edgegw_listener_refusals_total",
    "Connections the listener answered or closed itself, by reason (header_timeout, idle, body_timeout, "
    "header_too_large, too_many_headers, connection_limit, bad_request)",
    ["reason"], registry=registry)
