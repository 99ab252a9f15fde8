"""Backend rollouts' verdicts shared by every worker: a file beside the policy (`.NAME.rollouts.json`:
pool -> identity, state, why) that each worker watches. A worker whose judge (or whose admin API) ends
a pool's rollout writes the verdict there; every other worker's rollout of the same pool config follows
it, so an abort by hand or a rollback reaches the whole gateway, not just the worker that saw it.

A verdict names the pool config it was reached on (`identity`): a changed pool starts a new rollout,
and an old verdict never ends it. An unchanged one keeps its verdict across a restart.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import orjson

from edgecore.files import locked, read_json_object, write_atomic
from gateway.config.schema import GatewayConfig
from gateway.policy.watch import FileWatcher

log = logging.getLogger("edgegw.policy")


def rollouts_file(policy_path: str) -> str:
    path = Path(os.path.realpath(policy_path))
    return str(path.with_name(f".{path.name}.rollouts.json"))


def pool_identity(pool_config: Any) -> str:
    """The pool config a rollout runs on (a frozen dataclass of tuples: its repr is stable)."""
    return hashlib.sha256(repr(pool_config).encode()).hexdigest()[:16]


class RolloutVerdicts:
    def __init__(self, policy_path: str) -> None:
        self.path = rollouts_file(policy_path)
        self.rollouts: dict[str, tuple[str, Any]] = {}  # pool -> (identity, its BackendRollout)
        self._watcher: FileWatcher | None = None

    async def start(self) -> None:
        self._watcher = FileWatcher(self.path, self._changed)
        self._watcher.start()

    async def stop(self) -> None:
        if self._watcher is not None:
            await self._watcher.stop()

    def attach(self, config: GatewayConfig, upstreams: Any) -> None:
        """Follow (and share) the rollouts of this version's pools; called at start and on each reload."""
        self.rollouts = {}
        for name, pool in upstreams.pools.items():
            rollout = getattr(pool, "rollout", None)
            if rollout is None:
                continue
            identity = pool_identity(config.pool(name))
            self.rollouts[name] = (identity, rollout)
            rollout.decided = self._recorder(name, identity)
        self.apply()

    def apply(self) -> None:
        data = read_json_object(self.path) or {}
        for name, (identity, rollout) in self.rollouts.items():
            verdict = data.get(name)
            if isinstance(verdict, dict) and verdict.get("identity") == identity:
                rollout.follow(str(verdict.get("state")), str(verdict.get("why") or "decided in another worker"))

    async def _changed(self) -> None:
        self.apply()

    def _recorder(self, name: str, identity: str) -> Any:
        def record(state: str, why: str) -> None:
            try:
                with locked(self.path):
                    data = read_json_object(self.path) or {}
                    known = data.get(name)
                    if isinstance(known, dict) and known.get("identity") == identity:
                        return  # the first verdict on this rollout stands
                    data[name] = {"identity": identity, "state": state, "why": why, "at": time.time()}
                    self._write(data)
            except OSError as exc:
                log.error("rollout of pool %s: the verdict could not be shared with other workers: %s", name, exc)

        return record

    def _write(self, data: dict[str, Any]) -> None:
        write_atomic(self.path, orjson.dumps(data), prefix=".edgegw-rollouts-")
