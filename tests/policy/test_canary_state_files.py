"""The canary and rollout state files beside the policy (#26 breaks 4 and 5): a verdict that could not
be written is reported as such, and a tampered or odd state file never keeps a worker from starting:
it is set aside with a log line and a metric, and the gateway serves the stable policy."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from edgecore.files import write_atomic
from gateway.policy.canary_control import canary_problem
from gateway.policy.rollout_sync import rollouts_problem
from gateway.policy.state_file import StateFile
from testkit.policy_load import CHAT, start_gateway_file, wait_until
from tests.conftest import gateway_config, start_fake_backend, start_gateway
from tests.policy.conftest import limited


def canary_path(policy: Path) -> Path:
    return policy.with_name(f".{policy.name}.canary.json")


def start_canary(gw: Any, admin: dict[str, str], backend: Any) -> dict[str, Any]:
    body = {"policy": yaml.safe_dump(limited(backend, 50)), "steps": [10, 100], "min_step_s": 3600}
    resp = httpx.post(gw.url + "/admin/policy/canary", json=body, headers=admin, timeout=10)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_an_abort_that_cannot_be_written_is_not_reported_as_done(tmp_path: Path) -> None:
    backend = start_fake_backend()
    gw = start_gateway(tmp_path, limited(backend, 100))
    admin = {"authorization": f"Bearer {gw.token('ops', scopes=['admin'])}"}
    path = canary_path(gw.config_path)
    try:
        # `"history": 5` in the file: the abort still works, and the file says so (every worker follows it).
        started = start_canary(gw, admin, backend)
        path.write_bytes(orjson.dumps({**orjson.loads(path.read_bytes()), "history": 5}))
        resp = httpx.post(gw.url + "/admin/policy/canary/abort", headers=admin, timeout=10)
        assert resp.status_code == 200 and resp.json()["state"] == "aborted", resp.text
        data = orjson.loads(path.read_bytes())
        assert data["state"] == "aborted" and data["id"] == started["id"]
        assert [h["id"] for h in data["history"]] == [started["id"]]
        # The file cannot be written (its lock is a directory here, as good as an immutable file even
        # for root): the answer says the abort reached this worker only, and the log says why.
        start_canary(gw, admin, backend)
        Path(str(path) + ".lock").unlink()
        Path(str(path) + ".lock").mkdir()
        resp = httpx.post(gw.url + "/admin/policy/canary/abort", headers=admin, timeout=10)
        assert resp.status_code == 500, resp.text
        error = resp.json()["error"]
        assert error["code"] == "canary_not_shared" and "this worker only" in error["message"], error
        wait_until(lambda: "the verdict could not be written" in gw.proc.log(), 15)
        assert orjson.loads(path.read_bytes())["state"] == "running"  # what the other workers still see
    finally:
        gw.proc.stop()
        backend.proc.stop()


BAD_CANARIES = [
    {"state": "running", "id": "x", "text": 123, "settings": {}},
    {"state": "running", "id": "x", "text": "a: 1", "settings": 5},
    {"state": "running", "id": "x", "text": "a: 1", "settings": None},
    {"state": "running", "id": "x", "text": "a: 1", "settings": {}, "step": "2"},
    {"state": ["running"], "id": "x"},
    {"state": "aborted", "id": 7},
]


@pytest.mark.parametrize("content", BAD_CANARIES, ids=lambda c: orjson.dumps(c).decode()[:60])
def test_a_malformed_canary_file_is_set_aside(tmp_path: Path, content: dict[str, Any]) -> None:
    path = tmp_path / ".p.yaml.canary.json"
    path.write_bytes(orjson.dumps(content))
    assert StateFile(str(path), "canary", canary_problem).read() is None
    assert not path.exists() and len(list(tmp_path.glob(".p.yaml.canary.json.bad-*"))) == 1


def test_a_sound_canary_file_is_read_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / ".p.yaml.canary.json"
    sound = {"state": "running", "id": "x", "version": "v", "text": "a: 1", "settings": {}, "step": 1, "history": 5}
    path.write_bytes(orjson.dumps(sound))
    assert StateFile(str(path), "canary", canary_problem).read() == sound
    rollouts = tmp_path / ".p.yaml.rollouts.json"
    rollouts.write_bytes(orjson.dumps({"cpu": {"identity": "abc", "state": "promoted", "why": "", "at": 1}}))
    assert StateFile(str(rollouts), "rollouts", rollouts_problem).read() is not None
    rollouts.write_bytes(orjson.dumps({"cpu": {"identity": 5, "state": "promoted"}}))
    assert StateFile(str(rollouts), "rollouts", rollouts_problem).read() is None


def test_a_huge_state_file_is_set_aside_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / ".p.yaml.canary.json"
    with open(path, "wb") as f:
        f.truncate(64 << 20)  # sparse: 64 MB of zeros that are never read
    assert StateFile(str(path), "canary", canary_problem).read() is None
    assert not path.exists()


def test_the_gateway_starts_on_the_stable_policy_past_bad_state_files(tmp_path: Path) -> None:
    """Tampered JSON in the canary file and a symlink to /dev/zero as the rollouts file; then a FIFO
    in place of the canary file (which used to block every worker forever)."""
    backend = start_fake_backend()
    policy = tmp_path / "gateway.yaml"
    policy.write_text(yaml.safe_dump(gateway_config([backend])))
    canary = canary_path(policy)
    canary.write_bytes(orjson.dumps(BAD_CANARIES[0]))
    os.symlink("/dev/zero", policy.with_name(f".{policy.name}.rollouts.json"))
    gw = None
    try:
        for round_ in range(2):
            gw = start_gateway_file(policy, workers=2)
            token = {"authorization": f"Bearer {gw.token()}"}
            assert httpx.post(gw.url + "/v1/chat/completions", json=CHAT, headers=token, timeout=10).status_code == 200
            wait_until(lambda g=gw: g.metric("edgegw_state_files_set_aside_total") >= 1, 15)
            log = gw.proc.log()
            assert "state file" in log and "set aside as" in log, log[-2000:]
            assert "Traceback" not in log and "startup failed" not in log.lower(), log[-3000:]
            admin = {"authorization": f"Bearer {gw.token('ops', scopes=['admin'])}"}
            view = httpx.get(gw.url + "/admin/policy/canary", headers=admin, timeout=5).json()
            assert view["current"] is None
            gw.proc.stop()
            gw = None
            if round_ == 0:
                assert sorted(p.name.split(".bad-")[0] for p in tmp_path.glob("*.bad-*")) == [
                    ".gateway.yaml.canary.json", ".gateway.yaml.rollouts.json"]
                os.mkfifo(canary)
        assert not canary.exists()
    finally:
        if gw is not None:
            gw.proc.stop()
        backend.proc.stop()


def test_a_change_during_the_first_read_is_still_noticed(tmp_path: Path) -> None:
    """`watch(now=True)` reads the file at once; another worker's verdict landing during that read is
    followed by a second call (it used to be taken as seen, and missed until the next change)."""
    path = tmp_path / ".policy.yaml.canary.json"
    path.write_bytes(orjson.dumps({"n": 1}))
    state = StateFile(str(path), "canary", lambda data: None)
    seen: list[Any] = []

    async def changed() -> None:
        seen.append(state.read())
        if len(seen) == 1:
            write_atomic(path, orjson.dumps({"n": 2}))  # the other worker's write, during this read

    async def run() -> None:
        await state.watch(changed, now=True)
        try:
            for _ in range(40):  # 2 s; the watcher polls every 0.25 s
                if len(seen) > 1:
                    break
                await asyncio.sleep(0.05)
        finally:
            await state.stop()

    asyncio.run(run())
    assert seen == [{"n": 1}, {"n": 2}]
