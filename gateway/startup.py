"""What the gateway tells an operator at start-up, and on admin endpoints of features the policy leaves off."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.config.reader import ConfigError
from gateway.config.schema import GatewayConfig
from gateway.errors import GatewayError

log = logging.getLogger("edgegw")


def ensure_plugin_dir(config: GatewayConfig) -> bool:
    """Create `plugin_dir` when it is missing (uploads are written there); True if it was created.

    An unusable path is a configuration error naming the file and key, not an error on every upload.
    """
    if not config.plugin_dir:
        return False
    path = Path(config.plugin_dir)
    if path.is_dir():
        return False
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(config.source, "plugin_dir", f"cannot create {path}: {exc.strerror}") from None
    return True


def log_readiness(config: GatewayConfig, upstreams: Any) -> None:
    """The start-up line: ready to accept requests, and how many endpoints of each pool are healthy.

    `/readyz` answers 503 while any pool has no healthy endpoint; this line says the same at start.
    """
    counts = {name: (sum(1 for e in pool.endpoints if e.usable), len(pool.endpoints))
              for name, pool in upstreams.pools.items()}
    pools = ", ".join(f"{name} {up}/{total}" for name, (up, total) in counts.items())
    log.info("edgegw ready: %d routes, %d pools; healthy endpoints: %s", len(config.routes), len(config.pools),
             pools)
    empty = [name for name, (up, _) in counts.items() if up == 0]
    if empty:
        log.warning("no healthy endpoint yet in pool(s) %s: their requests get 503 and /readyz answers 503 "
                    "until a health check passes", ", ".join(empty))


def plugins_off_routes(config: GatewayConfig,
                       require_admin: Callable[[Request], Awaitable[Any]]) -> list[Route]:
    """`/admin/plugins...` when the policy configures no plugins: a 404 that says why, not "no such endpoint"."""
    message = (f"no plugins are configured: {config.source} has no `plugins:` list and no `plugin_dir`, so "
               "plugins cannot be listed or uploaded; add one of them and restart (docs/plugins.md)")

    async def off(request: Request) -> Response:
        await require_admin(request)
        raise GatewayError(404, message, "plugins_not_configured")

    methods = ["GET", "PUT", "DELETE", "POST"]
    return [Route(path, off, methods=methods) for path in
            ("/admin/plugins", "/admin/plugins/{name}", "/admin/plugins/{name}/rollback",
             "/admin/plugins/{name}/promote")]
