"""Running a policy canary in every worker: the canary's state lives in a file beside the policy
(`.NAME.canary.json`: id, text, settings, state, step, and the history of past canaries), which each
worker watches as it watches the policy.

Starting one writes the file with state `running`; each worker builds the candidate version (sharing
the stable version's long-lived state) and judges the traffic it sees. A step passed and the first
verdict (here or in another worker, or by hand) are written to the file, under a lock so that a later
verdict cannot overwrite the first, and every worker follows: a higher step moves its share,
`rolled_back`/`aborted` stop the canary, `promoted` also publishes the candidate as the policy file.
The verdict's writer adds the canary's record to the file's history, so every worker answers the same
about state and history.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.auth.feature import AUTH
from gateway.auth.verifier import bearer_token
from gateway.config.reader import ConfigError
from gateway.errors import GatewayError
from gateway.policy.canary import CanaryProxy, CanarySettings, PolicyCanary
from gateway.policy.parts import Parts, build_parts, merge_upstreams, start_parts
from gateway.policy.rollout_sync import RolloutVerdicts
from gateway.policy.runtime import PolicyRefused, PolicyRuntime
from gateway.policy.state_file import StateFile, shape_problem
from gateway.policy.version import PolicyVersion, policy_hash, refusal_text, validate_policy

log = logging.getLogger("edgegw.policy")

HISTORY = 20  # past canaries kept in the canary file
STATES = ("running", "promoted", "rolled_back", "aborted")


def canary_file(policy_path: str) -> str:
    path = Path(os.path.realpath(policy_path))
    return str(path.with_name(f".{path.name}.canary.json"))


def canary_problem(data: dict[str, Any]) -> str | None:
    """What is wrong with a canary file's content (None: sound). `history` is not checked: a bad
    one is dropped when the file is next written, it never stops a canary or a verdict."""
    if data.get("state") not in STATES:
        return f"has state {str(data.get('state'))[:40]!r}"
    required = ("id", "text", "settings") if data["state"] == "running" else ("id",)
    fields: dict[str, tuple[type, ...]] = {"id": (str,), "version": (str,), "text": (str,), "settings": (dict,),
                                           "step": (int,), "why": (str,)}
    problem = shape_problem(data, fields, required)
    if problem is None and data.get("step", 0) < 0:
        problem = "has a negative step"
    return problem


class CanaryNotShared(Exception):
    """A verdict reached here could not be written to the canary file: the other workers did not get it."""


class CanaryControl:
    def __init__(self, runtime: PolicyRuntime, set_entry: Callable[[Any], None]) -> None:
        self.runtime = runtime
        self.set_entry = set_entry
        self.path = canary_file(runtime.path) if runtime.current.text else ""
        self.file = StateFile(self.path, "canary", canary_problem)
        self.canary: PolicyCanary | None = None
        self.parts: Parts | None = None
        # Backend rollouts' verdicts, shared the same way (the policy file's directory, the same hook).
        self.rollouts = RolloutVerdicts(runtime.path) if self.path else None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._proxy: CanaryProxy | None = None
        runtime.on_applied = self._stable_changed

    async def start(self) -> None:
        if not self.path:
            return
        if self.rollouts is not None:
            self.rollouts.attach(self.runtime.parts.config, self.runtime.parts.upstreams)
            await self.rollouts.start()
        await self.file.watch(self.sync, now=True)  # a canary file left from before a restart is read now

    async def stop(self) -> None:
        await self.file.stop()
        if self.rollouts is not None:
            await self.rollouts.stop()

    # --- operations (admin API) --------------------------------------------------------------------

    async def begin(self, text: str, settings: CanarySettings) -> PolicyCanary:
        if self.canary is not None and self.canary.state == "running":
            raise PolicyRefused(f"a canary of version {self.canary.version} is running: promote or abort it first",
                                policy_hash(text))
        version = policy_hash(text)
        if version == self.runtime.current.version:
            raise PolicyRefused("this policy is the running version already", version)
        try:
            validate_policy(text, self.runtime.path)
        except ConfigError as exc:
            raise PolicyRefused(refusal_text(exc), version) from None
        self.file.update(lambda data: {
            "id": uuid.uuid4().hex[:12], "version": version, "text": text, "step": 0, "settings": settings.to_dict(),
            "state": "running", "why": "", "at": time.time(), "history": _history(data)})
        await self.sync()
        assert self.canary is not None
        return self.canary

    async def decide(self, state: str, why: str) -> PolicyCanary:
        """An operator's verdict. CanaryNotShared when it could only be applied in this worker."""
        canary = self.canary
        if canary is None or canary.state != "running":
            raise PolicyRefused("no canary is running", self.runtime.current.version)
        canary.finish(state, why)  # -> _decided
        for task in list(self._tasks):
            await task  # the verdict's publication: its failure is the operator's answer
        return canary

    # --- following the file ------------------------------------------------------------------------

    async def sync(self) -> None:
        """Make this worker match the canary file (called on every change of it)."""
        async with self._lock:
            data = self.file.read()
            canary = self.canary
            if data is None or data.get("state") != "running":
                if canary is not None and canary.state == "running":
                    state = data.get("state", "aborted") if data else "aborted"
                    if data is None or data.get("id") == canary.id:
                        canary.state = state
                        canary.event(state, (data or {}).get("why") or "canary file removed")
                    else:
                        canary.state = "aborted"
                        canary.event("aborted", "replaced by another canary")
                    self._end()
                return
            if canary is not None and canary.id == data["id"]:
                step = data.get("step", 0)
                if isinstance(step, int) and step > canary.step:
                    canary.advance_to(step, f"step {canary.step + 1} ({canary.share:.0%}) passed in another worker")
                return
            if canary is not None and canary.state == "running":
                canary.state = "aborted"
                canary.event("aborted", "replaced by another canary")
                self._end()
            await self._start(data)

    async def _start(self, data: dict[str, Any]) -> None:
        stable = self.runtime.parts
        version = data.get("version") or policy_hash(data["text"])
        try:
            settings = CanarySettings.parse(data["settings"])
            config = validate_policy(data["text"], self.runtime.path)
            upstreams = await merge_upstreams(config, stable.upstreams, stable.config)
            parts = build_parts(config, self.runtime.features, stable, upstreams)
            await start_parts(parts)
        except (ConfigError, ValueError, KeyError) as exc:
            log.error("policy canary %s cannot start here: %s", version, exc)
            return
        self.parts = parts
        self.canary = PolicyCanary(data["id"], version, settings, self._decided, self._advanced)
        step = data.get("step", 0)
        if step > 0:
            self.canary.advance_to(step, "steps passed before this worker followed the canary")
        self._proxy = CanaryProxy(self.canary, stable.proxy, parts.proxy, self._genuine)
        self.set_entry(self._proxy)

    async def _genuine(self, authorization: str | None) -> bool:
        """Whether the stable version accepts this Authorization header's token (a real caller)."""
        verifier = self.runtime.parts.state(AUTH.key)
        if verifier is None:
            return False
        try:
            await verifier.verify(bearer_token(authorization))
        except GatewayError:
            return False
        return True

    def _end(self) -> None:
        """Back to the stable version alone; the candidate's own objects are retired."""
        parts = self.parts
        if self._proxy is not None:
            self._proxy.detach()
            self._proxy = None
        self.set_entry(self.runtime.parts.proxy)
        if parts is not None:
            self.runtime.retire(parts, self.runtime.parts)
        self.parts = None

    def _decided(self, state: str, why: str) -> None:
        """A verdict here (the judge or an operator): written for every worker, then acted on."""
        canary = self.canary
        assert canary is not None

        async def publish() -> None:
            try:
                data = self.file.update(lambda data: self._finished(data, state, why, canary)
                                        if _running(data, canary.id) else None)
            except OSError as exc:
                async with self._lock:
                    if self.parts is not None:
                        self._end()
                where = f"{self.path}: {exc.strerror or exc}"
                if state == "promoted":  # nothing was published: the stable version stays
                    canary.state = "aborted"
                    canary.event("aborted", f"the promotion could not be recorded ({where})")
                log.error("policy canary %s: %s here, but the verdict could not be written to %s; other workers "
                          "still serve the canary", canary.version, state.replace("_", " "), where)
                raise CanaryNotShared(f"the canary was {state.replace('_', ' ')} in this worker only: the canary "
                                      f"file could not be written ({where}); other workers still serve it") from None
            first = _running(data, canary.id)
            text = data.get("text", "") if first and data is not None else ""
            if not first and data is not None and data.get("id") == canary.id:
                # Another worker's verdict came first: it is this canary's outcome here too.
                canary.state = data["state"]
                canary.event(data["state"], data.get("why") or "decided in another worker")
            if state == "promoted" and text:
                try:
                    await self.runtime.publish(text, "canary")
                except PolicyRefused as exc:
                    log.error("promoting policy canary %s failed: %s", canary.version, exc.message)
            async with self._lock:
                if self.parts is not None:
                    self._end()

        task = asyncio.get_running_loop().create_task(publish())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_logged_already)

    def _stable_changed(self, version: PolicyVersion) -> None:
        """A new stable version (file, SIGHUP, admin, promotion) ends a running canary here."""
        if self.rollouts is not None:
            self.rollouts.attach(self.runtime.parts.config, self.runtime.parts.upstreams)
        canary = self.canary
        if canary is None or canary.state != "running":
            if self.parts is None:
                return
        elif version.version == canary.version:
            canary.state = "promoted"
            canary.event("promoted", "the policy file now holds this version")
        else:
            canary.state = "aborted"
            why = f"the stable policy changed to {version.version}"
            canary.event("aborted", why)
            # So a worker started later does not resume it (the first worker to see the change writes it).
            try:
                self.file.update(lambda data: self._finished(data, "aborted", why, canary)
                                 if _running(data, canary.id) else None)
            except OSError as exc:
                log.error("policy canary %s: the abort could not be written to %s: %s", canary.version, self.path,
                          exc)
        self._end()

    def _advanced(self, step: int) -> None:
        """This worker's judge passed a step: written so that every worker moves its share with it."""
        canary = self.canary
        assert canary is not None
        try:
            self.file.update(lambda data: {**data, "step": step}
                             if data is not None and _running(data, canary.id) and data.get("step", 0) < step else None)
        except OSError as exc:
            log.error("policy canary %s: step %d could not be written to %s: %s", canary.version, step + 1,
                      self.path, exc)

    # --- the file ----------------------------------------------------------------------------------

    @staticmethod
    def _finished(data: dict[str, Any] | None, state: str, why: str, canary: PolicyCanary) -> dict[str, Any]:
        """The file's content once `canary` ended: its verdict, and its record first in the history."""
        record = {**canary.describe(), "state": state}
        history = [record, *_history(data)][:HISTORY]
        return {**(data or {}), "state": state, "why": why, "at": time.time(), "history": history}

    def describe(self) -> dict[str, Any]:
        """The running canary as this worker judges it, and the history as the canary file holds it:
        any worker answers the same about which canary runs and how past ones ended."""
        data = (self.file.read() if self.path else None) or {}
        canary = self.canary
        current = None
        if canary is not None and self.parts is not None and canary.state == "running" \
                and data.get("id") == canary.id and data.get("state") == "running":
            current = canary.describe()
        return {"current": current, "stable": self.runtime.current.version, "history": _history(data)}


def _logged_already(task: asyncio.Task[Any]) -> None:
    """A verdict's publication that failed was logged where it failed (and told to an operator who
    waited for it): retrieved here so that asyncio does not report it once more."""
    if not task.cancelled():
        task.exception()


def _running(data: dict[str, Any] | None, canary_id: str) -> bool:
    return data is not None and data.get("id") == canary_id and data.get("state") == "running"


def _history(data: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The past canaries' records a canary file holds (only the well-formed ones)."""
    history = (data or {}).get("history")
    return [h for h in history if isinstance(h, dict)] if isinstance(history, list) else []
