"""Run the gateway under uvicorn: one or more worker processes sharing a port.

Each connection is handled by `gateway.serving.protocol.EdgeHttpProtocol` (uvicorn's httptools
protocol with the `server:` limits); with `server.tls` the listener speaks TLS only. Each worker
process builds its app with `gateway.app.app_factory`, named to uvicorn by string.
"""

from __future__ import annotations

import functools
import logging
import os
import resource
import sys
import tempfile

import uvicorn

from gateway.config.preflight import preflight
from gateway.config.schema import GatewayConfig
from gateway.serving import protocol, tls
from gateway.serving.supervisor import ReloadingMultiprocess

log = logging.getLogger("edgegw.server")


CONFIG_ENV = "EDGEGW_CONFIG"  # the policy file worker processes load (`gateway.app.app_factory`)
APP_FACTORY = "gateway.app:app_factory"  # what each worker process imports and calls
STARTUP_FAILURE = 3  # the exit status `uvicorn.run` gives a server that failed to start


def serve(config: GatewayConfig, host: str | None = None, port: int | None = None,
          workers: int | None = None) -> int:
    """Serve `config` (validated by the caller, its file named for the workers) until stopped."""
    preflight(config)  # what start-up would fail on here, before the workers fork
    if config.server.tls:
        tls.check(config.server.tls, config.source)
    log_format()
    os.environ[CONFIG_ENV] = os.path.abspath(config.source)
    workers = workers or config.server.workers
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker writes its metrics to files here, so any worker's /metrics reports them all.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="edgegw-metrics-")
    _raise_fd_limit(config.server.max_connections)
    uv = uvicorn.Config(
        APP_FACTORY,
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
        # runs in each worker process, with this policy's TLS settings (a partial pickles to them)
        ssl_context_factory=functools.partial(tls.context_factory, config.server.tls) if config.server.tls else None,
    )
    server = uvicorn.Server(uv)
    try:
        if workers > 1:
            # SIGHUP reloads the policy in each worker, not a restart of every worker
            ReloadingMultiprocess(uv, sockets=[uv.bind_socket()]).run()
        else:
            uv.load_app()
            server.run()
    except KeyboardInterrupt:
        pass
    if workers == 1 and not server.started:
        return STARTUP_FAILURE
    return 0


def log_format() -> None:
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
