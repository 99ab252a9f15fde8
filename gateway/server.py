"""Run the gateway under uvicorn: one or more worker processes sharing a port."""

from __future__ import annotations

import logging
import os
import sys
import tempfile

import uvicorn

from gateway.config import load_config

_CONFIG_ENV = "EDGEGW_CONFIG"


def app_factory():  # noqa: ANN201 - uvicorn's factory hook
    """Each worker process loads and validates the config itself (uvicorn imports this by name)."""
    from gateway.app import create_app

    return create_app(load_config(os.environ[_CONFIG_ENV]))


def serve(config_path: str, host: str | None = None, port: int | None = None, workers: int | None = None) -> int:
    config = load_config(config_path)  # fail fast, in the parent, with a clear error
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ[_CONFIG_ENV] = os.path.abspath(config_path)
    workers = workers or config.server.workers
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker writes its metrics to files here, so any worker's /metrics reports them all.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="edgegw-metrics-")
    uvicorn.run(
        "gateway.server:app_factory",
        factory=True,
        host=host or config.server.host,
        port=port if port is not None else config.server.port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        access_log=False,
        # The gateway alone decides whether X-Forwarded-For is believed (`server.trust_forwarded_for`):
        # uvicorn's own middleware would take it from any loopback peer, so a local caller could pick
        # its client_ip (a rate-limit key), and it costs every request a frame.
        proxy_headers=False,
        log_level="warning",
        timeout_graceful_shutdown=30,
        backlog=4096,
    )
    return 0
