"""Files other processes read while we write them: atomic replacement, a lock for read-modify-write."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
import time
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


class BadFile(ValueError):
    """A file that is there but cannot be what it should be (not a regular file, too large, not JSON)."""


def read_json_file(path: str | Path, max_bytes: int) -> dict[str, Any] | None:
    """The JSON object in `path`, read without blocking and within `max_bytes`: None when there is
    no file; BadFile when it is not a regular file (a FIFO, a device behind a symlink), larger than
    `max_bytes`, or not one JSON object. Symlinks to regular files are followed."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BadFile(f"cannot be opened: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BadFile("is not a regular file")
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise BadFile(f"is larger than {max_bytes} bytes")
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadFile(f"is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadFile("does not hold a JSON object")
    return value


def set_aside(path: str | Path) -> str | None:
    """Rename a bad file out of the way (`NAME.bad-TIMESTAMP` beside it); the new name, or None when
    it is gone already (another process set it aside first) or cannot be renamed."""
    target = f"{os.fspath(path)}.bad-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    try:
        os.rename(path, target)
    except OSError:
        return None
    return target
