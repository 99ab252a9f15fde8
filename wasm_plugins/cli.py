"""`edgegw plugin ...` (owned by the wasm plugin work)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the plugin subcommands. Imports wasmtime only when a subcommand runs."""
