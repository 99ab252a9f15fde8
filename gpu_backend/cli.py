"""`edgegw backend` and `edgegw make-tiny-model` (owned by the GPU backend work)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the backend's subcommands. Imports torch only when a subcommand runs."""
