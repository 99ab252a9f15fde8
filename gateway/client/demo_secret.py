"""The demo issuer's HS secret, kept in edgegw's state directory so later commands can sign and check with it.

`edgegw demo` makes the secret once and reuses it; `edgegw token` and `edgegw check-config` read it
when `EDGEGW_DEMO_SECRET` is unset. `edgegw serve` never does: a production gateway takes its
secrets from its environment only.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

ENV = "EDGEGW_DEMO_SECRET"


def state_dir() -> Path:
    """edgegw's state directory: $EDGEGW_STATE_DIR, else $XDG_STATE_HOME/edgegw, else ~/.local/state/edgegw."""
    explicit = os.environ.get("EDGEGW_STATE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "state") / "edgegw"


def secret_file() -> Path:
    return state_dir() / "demo-secret"


def read_secret() -> str | None:
    """The stored demo secret, or None when the demo never ran (or the file is unreadable or empty)."""
    try:
        return secret_file().read_text().strip() or None
    except OSError:
        return None


def ensure_secret() -> str:
    """The stored demo secret, made (readable by the owner only) on first use."""
    existing = read_secret()
    if existing:
        return existing
    path = secret_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    return value


def use_stored_secret() -> bool:
    """Put the stored secret into the environment when `EDGEGW_DEMO_SECRET` is unset; True if it did."""
    if os.environ.get(ENV):
        return False
    stored = read_secret()
    if stored:
        os.environ[ENV] = stored
    return stored is not None
