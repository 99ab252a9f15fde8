"""Defaults every `edgegw` command that reads a policy file shares."""

from __future__ import annotations

import argparse
import os

CONFIG_ENV = "EDGEGW_CONFIG"  # the policy file of every command that takes one (the image sets it)
DEFAULT_CONFIG = "policies/gateway.yaml"


def default_config() -> str | None:
    """The policy file from $EDGEGW_CONFIG, or None when unset."""
    return os.environ.get(CONFIG_ENV) or None


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value
