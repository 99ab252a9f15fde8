"""`PolicyRuntime`: the active policy version of one worker, and how it changes.

A change arrives by file watch, SIGHUP or the admin API. It is validated as `edgegw check-config`
does; a valid one is built (taking over long-lived state, see `parts`), started, and installed with
one assignment per reader (`Gateway.install`), so the request path pays nothing per request for
versioning. Requests in flight keep the objects of the version they started on; what only the old
version used is stopped once they can have finished (`drain_s`).

Several workers converge because each one watches the file: the admin API writes the file
(atomic rename) and applies it in its own worker; the others see the file change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgecore.files import write_atomic
from gateway.config.environment import environment_values, hide_values
from gateway.config.reader import ConfigError
from gateway.config.schema import GatewayConfig
from gateway.feature import Feature
from gateway.policy import metrics as pm
from gateway.policy.parts import Parts, build_parts, merge_upstreams, retired, start_parts
from gateway.policy.restart import RESTART, report
from gateway.policy.version import History, PolicyVersion, Refusal, policy_hash, refusal_text, validate_policy
from gateway.policy.watch import FileWatcher, stat_state

log = logging.getLogger("edgegw.policy")


class PolicyRefused(Exception):
    """A policy that failed validation (message: check-config's text) or could not be applied."""

    def __init__(self, message: str, version: str) -> None:
        super().__init__(message)
        self.message = message
        self.version = version


class PolicyRuntime:
    def __init__(self, config: GatewayConfig, features: Sequence[Feature[Any]],
                 install: Callable[[Parts], None]) -> None:
        self.path = config.source
        self.features = features
        self.install = install
        try:
            text = Path(self.path).read_text()
        except OSError:
            text = ""  # built from a config that has no file (no watching, nothing to roll back to)
        self.current = PolicyVersion.of(text, config, "start")
        self.parts = build_parts(config, features)
        self.history = History()
        self.history.push(self.current)
        self.started = self.current
        self.refusal: Refusal | None = None
        self.pending_restart: list[str] = []  # keys of applied versions that only a restart applies
        self._lock = asyncio.Lock()
        self._watcher: FileWatcher | None = None
        self._closing: set[asyncio.Task[PolicyVersion | None]] = set()
        self.on_applied: Callable[[PolicyVersion], None] | None = None  # the canary control's hook
        self._info(self.current)

    # --- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the first version's parts, the file watcher and the SIGHUP handler."""
        await start_parts(self.parts)
        if self.current.text:
            self._watcher = FileWatcher(self.path, lambda: self.reload_file("file"))
            self._watcher.start()
            with contextlib.suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self._on_sighup)

    async def stop(self) -> None:
        if self._watcher is not None:
            await self._watcher.stop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        for task in list(self._closing):
            task.cancel()

    def _on_sighup(self) -> None:
        task = asyncio.get_running_loop().create_task(self.reload_file("sighup"))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # --- changes -----------------------------------------------------------------------------------

    async def reload_file(self, origin: str) -> PolicyVersion | None:
        """Load the file if its text differs from the running version; a refusal is logged, not raised."""
        # The file is read under the lock: read before it, the text could be overtaken while waiting
        # by a PUT to this worker that publishes a newer one, and applying it after would leave this
        # worker on a text the file no longer holds, with nothing left to notice.
        async with self._lock:
            try:
                text = Path(self.path).read_text()
            except (OSError, UnicodeDecodeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
                log.warning("policy %s unreadable (%s): keeping version %s", self.path, why,
                            self.current.version)
                return None
            if policy_hash(text) == self.current.version:
                return None
            try:
                return await self._apply(text, origin, publish=False)
            except PolicyRefused:
                return None

    async def apply(self, text: str, origin: str, publish: bool = False) -> PolicyVersion:
        """Validate and install `text`; raises PolicyRefused (the running version keeps serving).

        `publish`: also write it to the policy file, once its parts have started and before they are
        installed, so the file only ever holds a text that applied (and this worker runs the file)."""
        async with self._lock:
            return await self._apply(text, origin, publish)

    async def _apply(self, text: str, origin: str, publish: bool) -> PolicyVersion:
        """`apply`, with the lock held."""
        version = policy_hash(text)
        if version == self.current.version:
            if publish and self._file_text() != text:
                self._publish_running(origin)
            return self.current
        started = time.perf_counter()
        try:
            # Off the event loop: parsing a 10,000-route policy takes seconds, and requests
            # (and /healthz) must keep being answered meanwhile (docs/security.md).
            config = await asyncio.to_thread(validate_policy, text, self.path)
        except ConfigError as exc:
            raise self._refuse(version, origin, refusal_text(exc)) from None
        old = self.parts
        parts: Parts | None = None
        try:
            upstreams = await merge_upstreams(config, old.upstreams, old.config)
            parts = build_parts(config, self.features, old, upstreams)
            await start_parts(parts)
        except Exception as exc:  # a part that cannot start (a plugin, a JWKS file)
            if parts is not None:
                self.retire(parts, old)
            if isinstance(exc, ConfigError):
                raise self._refuse(version, origin, refusal_text(exc)) from None
            # No traceback: its values may hold a `${VAR}`'s value; the message names the variable.
            raise self._refuse(version, origin, hide_values(f"cannot start: {exc}",
                                                            environment_values(text))) from None
        if publish:
            try:
                self._write_file(text)
            except OSError as exc:
                self.retire(parts, old)
                raise self._unwritable(version, origin, exc) from None
        # Against what this process started with: that is what the socket and workers still are.
        pending = [c["key"] for c in report(self.started.config, config) if c["applies"] == RESTART]
        self.install(parts)  # from here new requests use it
        for feature in self.features:
            if feature.installed is not None:
                feature.installed(config)
        self.parts = parts
        previous = self.current
        self.current = PolicyVersion.of(text, config, origin)
        self.history.push(self.current)
        self.refusal = None
        self.pending_restart = pending
        if pending:
            log.warning("policy %s: these changes wait for a restart: %s", self.current.version,
                        ", ".join(pending))
        elapsed = time.perf_counter() - started
        pm.policy_reload_seconds.set(elapsed)
        pm.policy_reloads_total.labels(origin, "applied").inc()
        self._info(self.current)
        self.retire(old, parts)
        log.info("policy %s -> %s applied (%s, %.0f ms, %d routes, %d pools)", previous.version,
                 self.current.version, origin, elapsed * 1000, len(config.routes), len(config.pools))
        if self.on_applied is not None:
            self.on_applied(self.current)
        return self.current

    async def publish(self, text: str, origin: str = "admin") -> PolicyVersion:
        """Apply `text` here and write it to the policy file (so every other worker follows).

        Nothing reaches the file that did not validate and start here (`apply(publish=True)`)."""
        return await self.apply(text, origin, publish=True)

    async def rollback(self) -> PolicyVersion:
        previous = self.history.previous(self.current.version)
        if previous is None:
            raise PolicyRefused("no previous policy version to roll back to", self.current.version)
        return await self.publish(previous.text, "rollback")

    def _file_text(self) -> str | None:
        try:
            return Path(self.path).read_text()
        except (OSError, UnicodeDecodeError):
            return None

    def _publish_running(self, origin: str) -> None:
        """Write the running text back to the file (a PUT of the running version over a changed file)."""
        try:
            self._write_file(self.current.text)
        except OSError as exc:
            raise self._unwritable(self.current.version, origin, exc) from None

    def _unwritable(self, version: str, origin: str, exc: OSError) -> PolicyRefused:
        return self._refuse(version, origin, f"cannot write {self.path} ({exc.strerror}): change the policy at "
                            "its source (a ConfigMap is read-only) and the workers follow the file")

    def _write_file(self, text: str) -> None:
        """Atomic rename beside the file (resolving a symlink, so a linked file is replaced, not the link).

        The watcher's recorded state is updated first: this worker already runs the text."""
        target = os.path.realpath(self.path)
        mode = None
        with contextlib.suppress(OSError):
            mode = os.stat(target).st_mode & 0o777
        written = write_atomic(target, text.encode(), prefix=".edgegw-policy-", mode=mode)
        if self._watcher is not None:
            # The stat of what was written, not of the path now: another worker's rename may have
            # landed since, and then the watcher must see a change and load that text.
            self._watcher.state = stat_state(written)

    def _refuse(self, version: str, origin: str, message: str) -> PolicyRefused:
        self.refusal = Refusal(version, origin, message)
        pm.policy_reloads_total.labels(origin, "refused").inc()
        log.error("policy %s refused (%s): %s; version %s keeps serving", version, origin, message,
                  self.current.version)
        return PolicyRefused(message, version)

    def retire(self, old: Parts, new: Parts) -> None:
        """Stop what only `old` used: background work now, the rest once its requests can have finished."""
        gone = retired(old, new)
        drain_s = max((p.timeouts.total_s for p in old.config.pools), default=0.0)

        async def close() -> None:
            await gone.stop_background()
            await asyncio.sleep(drain_s)  # streams started on the old version may run this long
            await gone.close()

        task = asyncio.get_running_loop().create_task(close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    def _info(current: PolicyVersion) -> None:
        pm.policy_info.set(current.version, current.loaded_at)

    # --- reporting ---------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """For /admin/status.json, the status page and GET /admin/policy."""
        return {"version": self.current.version, "loaded_at": self.current.loaded_at,
                "origin": self.current.origin, "file": self.path, "pid": os.getpid(),
                "refused": self.refusal.describe() if self.refusal else None,
                "pending_restart": self.pending_restart,
                "history": self.history.describe()}
