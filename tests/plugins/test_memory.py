"""A failing plugin costs nothing: the memory of failed instances and of retired versions is freed
at once (not at some later garbage collection), measured as the gateway process's resident memory."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import gateway_config
from tests.plugins.conftest import plugin_entry, rss_mb
from tests.plugins.test_hot_reload import tagged

BODY = {"model": "fake-model", "prompt": "hi", "max_tokens": 2}
MEMORY_MB = 16  # each memhog instance dirties all of it in on_vm_start


def test_failures_and_swaps_do_not_grow_memory(own_plugins: dict[str, Path], make_backend: Any,
                                               make_gateway: Any) -> None:
    backend = make_backend()
    cfg = gateway_config([backend])
    cfg["plugins"] = [plugin_entry("hog", own_plugins["memhog"], limits={"memory_mb": MEMORY_MB, "deadline_ms": 500})]
    cfg["routes"][0]["plugins"] = [{"name": "hog", "phase": "routing"}]
    gw = make_gateway(cfg)
    pid = gw.proc.popen.pid
    admin = {"authorization": f"Bearer {gw.token(sub='ops', scopes=['admin'])}"}
    data = own_plugins["memhog"].read_bytes()
    started = time.monotonic()
    with httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {gw.token()}"}, timeout=20) as client:
        def ok() -> None:
            resp = client.post("/v1/completions", json=BODY)
            assert resp.status_code == 200, resp.text

        for _ in range(20):  # warm: allocator pools, connection, code paths
            ok()
        before = rss_mb(pid)
        # 200 instances that filled 16 MiB and trapped; after each, a good request (a fresh instance)
        # so the crash-loop back-off never starts and every failure really is a new instance
        for _ in range(200):
            resp = client.post("/v1/completions", json=BODY, headers={"x-abuse": "1"})
            assert resp.status_code == 500 and resp.json()["error"]["code"] == "plugin_failed", resp.text
            ok()
        after_failures = rss_mb(pid)
        # 30 new versions, each prepared (a 16 MiB instance) and serving before the next replaces it
        for tag in range(30):
            resp = client.put("/admin/plugins/hog", content=tagged(data, tag), headers=admin)
            assert resp.status_code == 201, resp.text
            ok()
        after_swaps = rss_mb(pid)
    assert gw.metric("edgegw_plugin_failures_total", plugin="hog") == 200
    assert gw.metric("edgegw_plugin_instances_started_total", plugin="hog") >= 230
    # Without the fix: +3 GB after the failures (200 x 16 MiB), +500 MB after the swaps.
    assert after_failures - before < 100, (before, after_failures)
    assert after_swaps - before < 100, (before, after_failures, after_swaps)
    assert time.monotonic() - started < 60
