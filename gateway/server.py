"""Run the gateway under uvicorn: one or more worker processes sharing a port.

Each connection is handled by `gateway.serving.protocol.EdgeHttpProtocol` (uvicorn's httptools
protocol with the `server:` limits); with `server.tls` the listener speaks TLS only.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
import tempfile
from typing import TYPE_CHECKING

import uvicorn

from gateway.features import load_config
from gateway.serving import protocol, tls
from gateway.serving.worker import CONFIG_ENV, worker_config

if TYPE_CHECKING:
    from gateway.app import EdgeApp

log = logging.getLogger("edgegw.server")


def app_factory() -> EdgeApp:
    """Each worker process loads and validates the config itself (uvicorn imports this by name)."""
    from gateway.app import create_app

    config = worker_config()
    _log_format()  # spawned workers do not inherit the parent's logging set-up
    protocol.configure(protocol.ListenerLimits.of(config.server))
    return create_app(config)


def serve(config_path: str, host: str | None = None, port: int | None = None, workers: int | None = None) -> int:
    config = load_config(config_path)  # fail fast, in the parent, with a clear error
    if config.server.tls:
        tls.check(config.server.tls, config.source)
    _log_format()
    os.environ[CONFIG_ENV] = os.path.abspath(config_path)
    workers = workers or config.server.workers
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker writes its metrics to files here, so any worker's /metrics reports them all.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="edgegw-metrics-")
    _raise_fd_limit(config.server.max_connections)
    if workers > 1:
        from gateway.policy.signals import forward_sighup_to_workers

        forward_sighup_to_workers()  # SIGHUP reloads the policy in each worker, not a restart
    uvicorn.run(
        "gateway.server:app_factory",
        factory=True,
        host=host or config.server.host,
        port=port if port is not None else config.server.port,
        workers=workers,
        loop="gateway.serving.loop:new_event_loop",  # uvloop; TLS handshakes held to header_timeout_s
        http=protocol.EdgeHttpProtocol,
        ws="none",
        access_log=False,
        # The gateway alone decides whether X-Forwarded-For is believed (`server.trust_forwarded_for`):
        # uvicorn's own middleware would take it from any loopback peer, so a local caller could pick
        # its client_ip (a rate-limit key), and it costs every request a frame.
        proxy_headers=False,
        log_level="warning",
        server_header=False,  # no `server: uvicorn` banner (and one header less to check per response)
        timeout_keep_alive=config.server.keepalive_timeout_s,  # type: ignore[arg-type]  # a float works
        timeout_graceful_shutdown=30,
        backlog=4096,
        ssl_context_factory=tls.context_factory if config.server.tls else None,
    )
    return 0


def _log_format() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _raise_fd_limit(max_connections: int) -> None:
    """Lift the soft descriptor limit to the hard one so `max_connections` (plus upstream sockets,
    files and headroom) fits; warn when even the hard limit is too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 2 * max_connections + 1024)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < 2 * max_connections + 256:
        log.warning("open-file limit %d is low for server.max_connections=%d (client and upstream sockets); "
                    "raise `ulimit -n` or lower max_connections", soft, max_connections)
