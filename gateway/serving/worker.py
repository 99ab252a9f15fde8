"""The configuration a worker process serves with, loaded once per process.

`edgegw serve` validates the file in the parent and names it in `EDGEGW_CONFIG`; uvicorn's worker
processes are spawned, so each loads it again here, once, for the app, the listener limits and TLS.
"""

from __future__ import annotations

import functools
import os

from gateway.config.schema import GatewayConfig
from gateway.features import load_config

CONFIG_ENV = "EDGEGW_CONFIG"


@functools.cache
def worker_config() -> GatewayConfig:
    """This process's gateway configuration (from the file named by `EDGEGW_CONFIG`)."""
    return load_config(os.environ[CONFIG_ENV])
