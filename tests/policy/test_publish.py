"""Publishing a policy (the admin API's PUT): a worker always converges to the file's text, even when
another worker's rename lands right after its own; and a text that cannot apply never reaches the file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gateway.features import FEATURES, load_config
from gateway.policy import runtime as runtime_module
from gateway.policy.runtime import PolicyRefused, PolicyRuntime
from gateway.policy.version import policy_hash
from testkit.harness import EDGEGW, ROOT
from testkit.policy_load import wait_until, worker_versions
from tests.conftest import gateway_config, start_fake_backend, start_gateway


def policy(routes: list[str], **server: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "server": {"access_log": "off", **server},
        "admin": {"enabled": False},
        "pools": [{"name": "p", "models": ["m"], "endpoints": [{"url": "http://127.0.0.1:9"}],
                   "health": {"interval_s": 60}}],
        "routes": [{"name": name, "paths": [f"/{name}"], "auth": "none"} for name in routes],
    }
    return config


@contextlib.asynccontextmanager
async def started_runtime(path: Path) -> AsyncIterator[PolicyRuntime]:
    """One worker's policy runtime on `path`, started (its file watcher too), stopped on leaving."""
    rt = PolicyRuntime(load_config(path), FEATURES, lambda parts: None)
    await rt.start()
    try:
        yield rt
    finally:
        await rt.stop()
        await rt.parts.upstreams.stop()


def test_a_rename_landing_between_write_and_stat_is_still_noticed(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker A writes its text; worker B's rename lands before A records the file's state. A must
    not take B's file for its own: its watcher notices B's text and A converges to it."""
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy(["start"])))
    mine = yaml.safe_dump(policy(["mine"]))
    theirs = yaml.safe_dump(policy(["theirs"]))
    real_write = runtime_module.write_atomic

    def write_then_other_worker(target: str, data: bytes, **kwargs: Any) -> Any:
        written = real_write(target, data, **kwargs)
        other = tmp_path / "other.tmp"  # the other worker's rename, before this one's stat
        other.write_text(theirs)
        os.replace(other, target)
        return written

    async def run() -> str:
        async with started_runtime(path) as rt:
            assert rt._watcher is not None
            rt._watcher.interval_s = 0.02
            monkeypatch.setattr(runtime_module, "write_atomic", write_then_other_worker)
            await rt.publish(mine)
            for _ in range(100):  # 2 s
                if rt.current.text == theirs:
                    break
                await asyncio.sleep(0.02)
            return rt.current.text

    assert asyncio.run(run()) == theirs
    assert path.read_text() == theirs


def test_a_file_change_noticed_during_a_publish_here_does_not_undo_it(tmp_path: Path) -> None:
    """Worker A's rename lands while this worker publishes a newer text (a PUT holding the lock); the
    watcher notices A's file meanwhile. Once the PUT is done, the file and this worker hold the PUT's
    text: the reload reads the file after the PUT, not A's text from before it (it used to, and the
    worker stayed on A's text with nothing left to notice)."""
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy(["start"])))
    theirs = yaml.safe_dump(policy(["theirs"]))
    mine = yaml.safe_dump(policy(["mine"]))

    async def run() -> tuple[str, str]:
        async with started_runtime(path) as rt:
            other = tmp_path / "other.tmp"
            other.write_text(theirs)
            os.replace(other, path)  # worker A's PUT, written before this worker's PUT arrives
            put = asyncio.create_task(rt.publish(mine))
            await asyncio.sleep(0)  # the PUT holds the lock, validating off the event loop
            assert rt._lock.locked()
            await rt.reload_file("file")  # what the watcher calls on seeing A's rename
            await put
            return rt.current.text, path.read_text()

    running, file_text = asyncio.run(run())
    assert file_text == mine
    assert running == mine


def test_an_unreadable_or_binary_file_keeps_the_running_version(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    start = yaml.safe_dump(policy(["start"]))
    path.write_text(start)

    async def run() -> list[object]:
        async with started_runtime(path) as rt:
            path.write_bytes(b"\xff\xfe not text")
            binary = await rt.reload_file("file")
            path.unlink()
            missing = await rt.reload_file("file")
            return [binary, missing, rt.current.text]

    assert asyncio.run(run()) == [None, None, start]


@pytest.mark.parametrize("access_log", ["dir", "missing/access.log", "readonly/access.log"])
def test_a_policy_start_up_would_fail_on_is_refused_everywhere_and_never_published(
        tmp_path: Path, access_log: str) -> None:
    """`access_log` a directory, in a missing folder, or unwritable: check-config, the admin check and
    the PUT all refuse it (400 naming the key), and the file keeps the running text."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "readonly").mkdir()
    (tmp_path / "readonly").chmod(0o500)
    target = str(tmp_path / access_log)
    backend = start_fake_backend()
    gw = start_gateway(tmp_path, gateway_config([backend]), workers=2)
    running = gw.config_path.read_text()
    admin = {"authorization": f"Bearer {gw.token('ops', scopes=['admin'])}"}
    text = yaml.safe_dump({**gw.config, "server": {"access_log": target}})
    try:
        if os.geteuid() == 0 and access_log.startswith("readonly"):
            pytest.skip("root writes into a read-only folder")
        wait_until(lambda: len(worker_versions(gw.url)) == 2, 30)
        candidate = tmp_path / "candidate.yaml"
        candidate.write_text(text)
        out = subprocess.run([*EDGEGW, "check-config", str(candidate)], capture_output=True, text=True,
                             cwd=ROOT, timeout=60)
        assert out.returncode == 2, out
        assert "server.access_log" in out.stderr, out.stderr
        resp = httpx.post(gw.url + "/admin/policy/check", content=text, headers=admin, timeout=10)
        assert resp.status_code == 400, resp.text
        assert "server.access_log" in resp.json()["error"]["message"]
        resp = httpx.put(gw.url + "/admin/policy", content=text, headers=admin, timeout=10)
        assert resp.status_code == 400, resp.text
        assert "server.access_log" in resp.json()["error"]["message"]
        assert gw.config_path.read_text() == running
        assert set(worker_versions(gw.url).values()) == {policy_hash(running)}
    finally:
        (tmp_path / "readonly").chmod(0o700)
        gw.proc.stop()
        backend.proc.stop()


def test_a_text_that_cannot_start_is_not_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure while starting the new version's parts (past validation) leaves the file alone."""
    path = tmp_path / "policy.yaml"
    start = yaml.safe_dump(policy(["start"]))
    path.write_text(start)
    other = yaml.safe_dump(policy(["other"]))

    async def broken_start(parts: Any) -> None:
        raise RuntimeError("cannot start this part")

    async def run() -> None:
        async with started_runtime(path) as rt:
            monkeypatch.setattr(runtime_module, "start_parts", broken_start)
            with pytest.raises(PolicyRefused):
                await rt.publish(other)
            assert rt.current.text == start

    asyncio.run(run())
    assert path.read_text() == start
