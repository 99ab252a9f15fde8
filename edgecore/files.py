"""Files other processes read while we write them."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: str | Path, data: bytes | bytearray, *, prefix: str = ".edgegw-", mode: int | None = None) -> None:
    """Replace `path` with `data` by a rename in the same folder: a concurrent reader (another worker,
    a watcher) sees the old file or the whole new one, never a half-written one. `mode` sets the new
    file's permission bits (mkstemp makes it 0600). The temporary file is removed when this fails."""
    folder = os.path.dirname(os.fspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
