"""Backend rollouts' verdicts shared by every worker: a state file beside the policy
(`.NAME.rollouts.json`: pool -> identity, state, why; `gateway.policy.state_file`, the same mechanism
as policy canaries) that each worker watches. A worker whose judge (or whose admin API) ends a pool's
rollout writes the verdict there; every other worker's rollout of the same pool config follows it, so
an abort by hand or a rollback reaches the whole gateway, not just the worker that saw it.

A verdict names the pool config it was reached on (`identity`): a changed pool starts a new rollout,
and an old verdict never ends it. An unchanged one keeps its verdict across a restart.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.config.schema import GatewayConfig
from gateway.policy.state_file import StateFile, shape_problem
from gateway.upstream.forward import Upstreams
from gateway.upstream.rollout import BackendRollout

log = logging.getLogger("edgegw.policy")


def rollouts_file(policy_path: str) -> str:
    path = Path(os.path.realpath(policy_path))
    return str(path.with_name(f".{path.name}.rollouts.json"))


def pool_identity(pool_config: Any) -> str:
    """The pool config a rollout runs on (a frozen dataclass of tuples: its repr is stable)."""
    return hashlib.sha256(repr(pool_config).encode()).hexdigest()[:16]


def rollouts_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with a rollouts file's content (None: sound)."""
    for pool, verdict in data.items():
        if not isinstance(verdict, dict):
            return f"has a {type(verdict).__name__} for pool {pool[:40]!r}"
        problem = shape_problem(verdict, {"identity": (str,), "state": (str,), "why": (str,)}, ("identity", "state"))
        if problem is not None:
            return f"{problem} for pool {pool[:40]!r}"
    return None


class RolloutVerdicts:
    def __init__(self, policy_path: str) -> None:
        self.path = rollouts_file(policy_path)
        self.file = StateFile(self.path, "rollouts", rollouts_problem)
        self.rollouts: dict[str, tuple[str, BackendRollout]] = {}  # pool -> (identity, its rollout)

    async def start(self) -> None:
        await self.file.watch(self._changed)

    async def stop(self) -> None:
        await self.file.stop()

    def attach(self, config: GatewayConfig, upstreams: Upstreams) -> None:
        """Follow (and share) the rollouts of this version's pools; called at start and on each reload."""
        self.rollouts = {}
        for name, pool in upstreams.pools.items():
            rollout = pool.rollout
            if rollout is None:
                continue
            identity = pool_identity(config.pool(name))
            self.rollouts[name] = (identity, rollout)
            rollout.decided = self._recorder(name, identity)
        self.apply()

    def apply(self) -> None:
        data = self.file.read() or {}
        for name, (identity, rollout) in self.rollouts.items():
            verdict = data.get(name)
            if verdict is not None and verdict["identity"] == identity:
                rollout.follow(verdict["state"], verdict.get("why") or "decided in another worker")

    async def _changed(self) -> None:
        self.apply()

    def _recorder(self, name: str, identity: str) -> Callable[[str, str], None]:
        def record(state: str, why: str) -> None:
            def first_verdict(data: dict[str, Any] | None) -> dict[str, Any] | None:
                known = (data or {}).get(name)
                if known is not None and known["identity"] == identity:
                    return None  # the first verdict on this rollout stands
                return {**(data or {}), name: {"identity": identity, "state": state, "why": why, "at": time.time()}}

            try:
                self.file.update(first_verdict)
            except OSError as exc:
                log.error("rollout of pool %s: the verdict could not be shared with other workers: %s", name, exc)
                raise

        return record
