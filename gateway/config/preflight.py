"""What start-up would fail on in this environment, beyond the file's own validity: checked by
`edgegw check-config`, `edgegw serve` before it forks, and every policy change (file, SIGHUP, admin API),
so a text that passes here does not crash-loop the workers at their next start. (`plugin_dir` is
checked where it is parsed, `gateway.plugins.config`.)"""

from __future__ import annotations

import os
from pathlib import Path

from gateway.config.reader import ConfigError
from gateway.config.schema import GatewayConfig


def preflight(config: GatewayConfig) -> None:
    """Raise ConfigError (file and key named) for a path start-up could not use."""
    problem = _unwritable_file(config.server.access_log)
    if problem is not None:
        raise ConfigError(config.source, "server.access_log", problem)


def _unwritable_file(target: str) -> str | None:
    """Why the access log at `target` could not be opened for appending; None when it can (or is no file)."""
    if target in ("stdout", "off"):
        return None
    path = Path(target)
    if path.is_dir():
        return f"{target} is a directory (give a file path, `stdout` or `off`)"
    if path.exists():
        return None if os.access(path, os.W_OK) else f"{target} is not writable"
    folder = path.parent
    if not folder.is_dir():
        return f"cannot create {target}: folder {folder} does not exist"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot create {target}: folder {folder} is not writable"
    return None
