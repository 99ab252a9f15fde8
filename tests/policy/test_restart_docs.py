"""The restart classification is complete for `server` and documented as generated."""

from __future__ import annotations

import dataclasses

from gateway.config.schema import GatewayConfig, ServerConfig
from gateway.features import PARTS
from gateway.policy.restart import APPLIES, RESTART, classify, docs_table
from testkit.harness import ROOT


def test_docs_carry_the_generated_table() -> None:
    assert docs_table() in (ROOT / "docs" / "policy-reload.md").read_text()


def test_every_server_key_and_top_level_section_is_classified_explicitly() -> None:
    for f in dataclasses.fields(ServerConfig):
        assert f"server.{f.name}" in APPLIES, f.name
    for f in dataclasses.fields(GatewayConfig):
        if f.name not in ("source", "sections", "server"):
            assert f.name in APPLIES, f.name
    for part in PARTS:  # each feature's top-level keys
        for key in part.top_keys:
            assert key in APPLIES, key
    assert classify("server.tls.cert_file")[0] == RESTART
    assert classify("pools[gpu].endpoints")[0] == "live"
