"""Files other processes read while we write them: atomic replacement, a lock for read-modify-write."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson


def write_atomic(path: str | Path, data: bytes | bytearray, *, prefix: str = ".edgegw-",
                 mode: int | None = None) -> os.stat_result:
    """Replace `path` with `data` by a rename in the same folder: a concurrent reader (another worker,
    a watcher) sees the old file or the whole new one, never a half-written one. `mode` sets the new
    file's permission bits (mkstemp makes it 0600). The temporary file is removed when this fails.

    Returns the stat of the file written, taken before the rename: a `stat(path)` afterwards may
    already see another writer's file."""
    folder = os.path.dirname(os.fspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=prefix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            written = os.fstat(f.fileno())
        os.replace(tmp, path)
        return written
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path`.lock: one process at a time read-modify-writes `path`."""
    with open(os.fspath(path) + ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read_json_object(path: str | Path) -> dict[str, Any] | None:
    """The JSON object in `path`; None when the file is missing, unreadable or holds no object."""
    try:
        data = orjson.loads(Path(path).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
