"""The one way verdicts reach every worker (and every replica sharing the policy's directory): a
state file beside the policy, watched by each worker, changed only under a lock so that the first
verdict on a canary stands. Policy canaries (`.NAME.canary.json`) and backend rollouts
(`.NAME.rollouts.json`) both keep theirs here.

A state file is read defensively: only a regular file, at most `MAX_BYTES`, checked against its
expected shape. A bad one (tampered, truncated by a full disk, a FIFO or a device in its place) is
set aside (renamed `NAME.bad-TIME-PID`) with an ERROR log line and
`edgegw_state_files_set_aside_total{file}`, and is then read as absent: the gateway carries on with
the stable policy instead of failing to start or blocking.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from prometheus_client import Counter

from edgecore.files import BadFile, locked, read_json_file, set_aside, write_atomic
from gateway.metrics import registry
from gateway.policy.watch import FileWatcher

log = logging.getLogger("edgegw.policy")

MAX_BYTES = 4 << 20  # a canary file holds a policy text and 20 past canaries' records

set_aside_total = Counter("edgegw_state_files_set_aside_total", "State files beside the policy that were "
                          "unreadable or malformed and were renamed out of the way", ["file"], registry=registry)


class StateFile:
    """`check(data)` names what is wrong with a parsed file's content, or returns None when it is sound."""

    def __init__(self, path: str, kind: str, check: Callable[[dict[str, Any]], str | None]) -> None:
        self.path = path
        self.kind = kind  # "canary" | "rollouts": the metric's label and the temporary files' prefix
        self.check = check
        self._watcher: FileWatcher | None = None

    def read(self) -> dict[str, Any] | None:
        """The file's content, or None when there is none or it was bad (and is now set aside)."""
        try:
            data = read_json_file(self.path, MAX_BYTES)
            problem = None if data is None else self.check(data)
        except BadFile as exc:
            data, problem = None, str(exc)
        if problem is None:
            return data
        moved = set_aside(self.path)
        set_aside_total.labels(self.kind).inc()
        log.error("%s state file %s %s: %s; carrying on without it", self.kind, self.path, problem,
                  f"set aside as {os.path.basename(moved)}" if moved else "it could not be renamed")
        return None

    def update(self, change: Callable[[dict[str, Any] | None], dict[str, Any] | None]) -> dict[str, Any] | None:
        """Read-modify-write under the lock: `change(current)` answers the new content, or None to
        leave the file as it is. Returns what the file held before. OSError when it cannot be written."""
        with locked(self.path):
            current = self.read()
            new = change(current)
            if new is not None:
                write_atomic(self.path, orjson.dumps(new), prefix=f".edgegw-{self.kind}-")
            return current

    # --- watching ------------------------------------------------------------------------------------

    async def watch(self, changed: Callable[[], Awaitable[object]], *, now: bool = False) -> None:
        """Call `changed()` on every change of the file (and once at once with `now`)."""
        # The watcher records the file's state before `changed()` reads it: a change landing during
        # that first read is then still noticed (recorded after it, it would be taken as seen).
        self._watcher = FileWatcher(self.path, changed)
        if now:
            await changed()
        self._watcher.start()

    async def stop(self) -> None:
        if self._watcher is not None:
            await self._watcher.stop()


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def shape_problem(data: dict[str, Any], fields: dict[str, tuple[type, ...]], required: tuple[str, ...] = ()) -> str | None:
    """What is wrong with `data` against `fields` (name -> the types allowed), or None."""
    for name in required:
        if name not in data:
            return f"has no {name!r}"
    for name, types in fields.items():
        if name in data and (not isinstance(data[name], types) or (types == (int,) and not is_int(data[name]))):
            return f"has {name!r} of type {type(data[name]).__name__}"
    return None
