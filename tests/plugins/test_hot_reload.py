"""Hot loading through the admin API and the watched directory: replace under load, rejected
uploads, rollback, canary with automatic rollback, admin authentication."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import gateway_config, start_fake_backend, start_gateway
from tests.plugins.conftest import ROUTER_CONFIG, plugin_entry

BODY = {"model": "fake-model", "prompt": "hi", "max_tokens": 2}


def tagged(data: bytes, tag: int) -> bytes:
    """The same module with a custom section appended: a new version (new sha256), same behaviour."""
    payload = b"\x05edgev" + tag.to_bytes(4, "little")
    return data + b"\x00" + bytes([len(payload)]) + payload


@pytest.fixture(scope="module")
def env(plugins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    backend = start_fake_backend()
    cfg = gateway_config([backend])
    cfg["plugins"] = [plugin_entry("hot", plugins["router"], config=ROUTER_CONFIG,
                                   canary={"weight": 0.5, "min_requests": 6, "max_failure_rate": 0.3})]
    cfg["routes"][0]["plugins"] = [{"name": "hot", "phase": "routing"}]
    gw = start_gateway(tmp_path_factory.mktemp("hot"), cfg)
    yield gw, plugins
    gw.proc.stop()
    backend.proc.stop()


def _admin(gw: Any) -> dict[str, str]:
    return {"authorization": f"Bearer {gw.token(sub='ops', scopes=['admin'])}"}


def _put(gw: Any, name: str, data: bytes, **params: Any) -> httpx.Response:
    return httpx.put(f"{gw.url}/admin/plugins/{name}", content=data, params=params,
                     headers={**_admin(gw), "content-type": "application/wasm"}, timeout=30)


def _state(gw: Any, name: str = "hot") -> dict[str, Any]:
    resp = httpx.get(f"{gw.url}/admin/plugins/{name}", headers=_admin(gw))
    assert resp.status_code == 200, resp.text
    return resp.json()


async def _load(gw: Any, n: int, concurrency: int, headers: dict[str, str] | None = None,
                during: Any = None) -> list[int]:
    statuses: list[int] = []
    sem = asyncio.Semaphore(concurrency)
    auth = {"authorization": f"Bearer {gw.token()}", **(headers or {})}
    async with httpx.AsyncClient(base_url=gw.url, headers=auth, timeout=20) as client:
        async def one(i: int) -> None:
            async with sem:
                if during is not None and i in during:
                    await during[i]()
                statuses.append((await client.post("/v1/completions", json=BODY)).status_code)
        await asyncio.gather(*(one(i) for i in range(n)))
    return statuses


def test_admin_requires_the_admin_scope(env: Any) -> None:
    gw, _ = env
    assert httpx.get(gw.url + "/admin/plugins").status_code == 401
    user = {"authorization": f"Bearer {gw.token()}"}
    assert httpx.get(gw.url + "/admin/plugins", headers=user).status_code == 403
    assert httpx.put(gw.url + "/admin/plugins/hot", content=b"x", headers=user).status_code == 403
    listed = httpx.get(gw.url + "/admin/plugins", headers=_admin(gw)).json()["plugins"]
    assert [p["name"] for p in listed] == ["hot"]


async def test_hot_replace_under_load_fails_nothing(env: Any) -> None:
    gw, plugins = env
    data = plugins["router"].read_bytes()
    before = _state(gw)["stable"]["version"]

    def replace(tag: int) -> Any:
        async def go() -> None:
            resp = await asyncio.to_thread(_put, gw, "hot", tagged(data, tag))
            assert resp.status_code == 201, resp.text
        return go

    statuses = await _load(gw, 400, 16, during={50: replace(1), 150: replace(2), 250: replace(3)})
    assert statuses.count(200) == 400, {s: statuses.count(s) for s in set(statuses)}
    assert _state(gw)["stable"]["version"] == before + 3


def test_bad_uploads_keep_the_serving_version(env: Any) -> None:
    gw, plugins = env
    serving = _state(gw)["stable"]
    for data, why in ((b"\0asm garbage", "does not compile"),
                      (plugins["auth"].read_bytes(), "configure"),  # rejects the router's configuration
                      (b"(module)", "no proxy_abi_version")):
        resp = _put(gw, "hot", data)
        assert resp.status_code == 422, resp.text
        assert why in resp.json()["error"]["message"]
    resp = _put(gw, "hot", plugins["router"].read_bytes(), sha256="0" * 64)
    assert resp.status_code == 422 and "sha256" in resp.json()["error"]["message"]
    assert _state(gw)["stable"]["version"] == serving["version"]
    assert httpx.post(gw.url + "/v1/completions", json=BODY,
                      headers={"authorization": f"Bearer {gw.token()}"}).status_code == 200


def test_rollback(env: Any) -> None:
    gw, plugins = env
    first = _state(gw)["stable"]
    resp = _put(gw, "hot", tagged(plugins["router"].read_bytes(), 77), description="v-next")
    assert resp.status_code == 201 and resp.json()["role"] == "stable"
    resp = httpx.post(f"{gw.url}/admin/plugins/hot/rollback", headers=_admin(gw))
    assert resp.status_code == 200, resp.text
    assert resp.json()["stable"]["sha256"] == first["sha256"]


async def test_failing_canary_is_rolled_back_automatically(env: Any) -> None:
    gw, plugins = env
    stable = _state(gw)["stable"]
    # the loop plugin times out on requests carrying x-abuse; the router ignores the header
    resp = _put(gw, "hot", plugins["loop"].read_bytes(), canary="0.5")
    assert resp.status_code == 201 and resp.json()["role"] == "canary"
    statuses = await _load(gw, 80, 4, headers={"x-abuse": "1"})
    state = _state(gw)
    assert state["canary"] is None, state
    assert state["stable"]["sha256"] == stable["sha256"]
    assert any("rolled back canary" in e["event"] for e in state["events"])
    assert 0 < statuses.count(500) < 40 and statuses[-20:].count(200) == 20
    assert gw.metric("edgegw_plugin_rollbacks_total", plugin="hot", reason="canary") == 1


async def test_canary_promotion(env: Any) -> None:
    gw, plugins = env
    resp = _put(gw, "hot", tagged(plugins["router"].read_bytes(), 99), canary="0.3")
    assert resp.status_code == 201 and resp.json()["role"] == "canary"
    statuses = await _load(gw, 30, 4)
    assert statuses.count(200) == 30
    assert _state(gw)["canary"]["requests"] > 0
    resp = httpx.post(f"{gw.url}/admin/plugins/hot/promote", headers=_admin(gw))
    assert resp.status_code == 200 and resp.json()["canary"] is None
    assert resp.json()["stable"]["version"] == _state(gw)["stable"]["version"]


async def test_deny_canary_is_rolled_back(env: Any) -> None:
    """A canary that answers 403 to everything never fails, but answers locally far more often than
    the stable version on the same route: judged against it, it is rolled back."""
    gw, plugins = env
    stable = _state(gw)["stable"]
    # the auth plugin with keys nobody sends: every request gets its own 401, no failure at all
    resp = _put(gw, "hot", plugins["auth"].read_bytes(), canary="0.5", config='{"keys": ["k|s|t|x"]}')
    assert resp.status_code == 201 and resp.json()["role"] == "canary", resp.text
    statuses = await _load(gw, 60, 2)
    state = _state(gw)
    assert state["canary"] is None, state
    assert state["stable"]["sha256"] == stable["sha256"]
    assert any("rolled back canary (canary answered locally" in e["event"] for e in state["events"]), state
    assert 0 < statuses.count(401) <= 30 and statuses[-20:].count(200) == 20, statuses
    assert gw.metric("edgegw_plugin_rollbacks_total", plugin="hot", reason="canary") == 2


def test_plugin_directory_and_delete(plugins: dict[str, Path], make_backend: Any, make_gateway: Any,
                                     tmp_path: Path) -> None:
    backend = make_backend()
    pdir = tmp_path / "plugins"
    pdir.mkdir()
    cfg = gateway_config([backend], plugin_dir=str(pdir))
    cfg["plugins"] = [plugin_entry("dirplug", config=ROUTER_CONFIG)]
    cfg["routes"][0]["plugins"] = [{"name": "dirplug", "phase": "routing"}]
    gw = make_gateway(cfg)
    headers = {"authorization": f"Bearer {gw.token()}"}

    def status() -> int:
        return httpx.post(gw.url + "/v1/completions", json=BODY, headers=headers).status_code

    def wait_for(code: int) -> None:
        deadline = time.monotonic() + 10
        while status() != code:
            assert time.monotonic() < deadline, f"never got {code}:\n{gw.proc.log()[-3000:]}"
            time.sleep(0.1)

    assert status() == 503  # declared, not loaded yet: fail_closed
    tmp = pdir / ".dirplug.tmp"
    tmp.write_bytes(plugins["router"].read_bytes())
    tmp.rename(pdir / "dirplug.wasm")
    wait_for(200)
    (pdir / "dirplug.wasm").write_bytes(b"not wasm")  # a bad file: the loaded version keeps serving
    time.sleep(0.6)
    assert status() == 200
    assert gw.metric("edgegw_plugin_loads_total", plugin="dirplug", source="dir", result="error") >= 1
    resp = httpx.delete(gw.url + "/admin/plugins/dirplug", headers=_admin(gw))
    assert resp.status_code == 200 and not (pdir / "dirplug.wasm").exists()
    wait_for(503)
