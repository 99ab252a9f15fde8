"""Hostile policy text: alias bombs, deep nesting, and `${VAR}` values that must never be echoed.

Refused within milliseconds and bounded memory with a 400 naming the problem, by `check-config`'s
loader and by a running gateway's admin API, with no traceback in its log."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import httpx
import pytest
import yaml

from gateway.config.reader import ConfigError
from gateway.features import load_config_text
from tests.conftest import gateway_config, start_fake_backend, start_gateway

SECRET = "probe-secret-0123456789-abcdef"
BASE = """\
admin: {enabled: false}
pools: [{name: p, models: [m], endpoints: [{url: "http://127.0.0.1:9"}]}]
routes: [{name: r, paths: [/v1/chat/completions], auth: none}]
"""


def alias_bomb(levels: int = 9) -> str:
    """A 'billion laughs' under `plugins[].config`: each level lists the previous one nine times."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        refs = ",".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    body = "\n".join("    " + line for line in lines)
    return BASE + f"plugins:\n- name: bomb\n  config:\n{body}\n"


PLUGIN = "plugins:\n- name: deep\n  config:\n"


def flow_nesting(depth: int) -> str:
    return BASE + PLUGIN + "    x: " + "[" * depth + "]" * depth + "\n"


def block_nesting(depth: int) -> str:
    lines = [" " * i + f"k{i}:" for i in range(depth)]
    return BASE + PLUGIN + "\n".join("    " + line for line in lines) + " 1\n"


def refused(text: str) -> tuple[ConfigError, float, int]:
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(ConfigError) as info:
            load_config_text(text, "policy.yaml")
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return info.value, elapsed, peak


def test_an_alias_bomb_is_refused_fast_and_small() -> None:
    text = alias_bomb()
    assert len(text) < 1500
    error, elapsed, peak = refused(text)
    assert "alias" in error.problem, error
    assert elapsed < 0.5 and peak < 16 << 20, (elapsed, peak)


def test_a_few_aliases_still_work() -> None:
    with_anchor = ("pools:\n- {name: p, models: [m], endpoints: [&ep {url: 'http://127.0.0.1:9'}]}\n"
                   "- {name: q, models: [n], endpoints: [*ep]}\n"
                   "admin: {enabled: false}\nroutes: [{name: r, paths: [/x], auth: none}]\n")
    config = load_config_text(with_anchor, "policy.yaml")
    assert [p.endpoints[0].url for p in config.pools] == ["http://127.0.0.1:9"] * 2


@pytest.mark.parametrize("make", [flow_nesting, block_nesting])
@pytest.mark.parametrize("depth", [200, 5000])
def test_deep_nesting_is_refused_naming_the_problem(make: object, depth: int) -> None:
    assert callable(make)
    error, elapsed, _ = refused(make(depth))
    assert "nest" in error.problem and "levels" in error.problem, error
    assert elapsed < 2, elapsed


def test_the_running_gateway_answers_400_and_logs_no_traceback(tmp_path: Path) -> None:
    backend = start_fake_backend()
    config = gateway_config([backend])
    gw = start_gateway(tmp_path, config, workers=2, env={"EDGEGW_PROBE_URL": SECRET})
    admin = {"authorization": f"Bearer {gw.token('ops', scopes=['admin'])}"}
    pools = [{**config["pools"][0], "endpoints": [{"url": "${EDGEGW_PROBE_URL}"}]}]
    leaky = yaml.safe_dump({**config, "pools": pools})
    assert "${EDGEGW_PROBE_URL}" in leaky
    try:
        for text, words in ((alias_bomb(), "alias"), (flow_nesting(5000), "nest"), (block_nesting(1100), "nest")):
            full = yaml.safe_dump(config) + text.split(BASE, 1)[1]
            for path in ("/admin/policy/check", "/admin/policy"):
                started = time.monotonic()
                resp = httpx.request("POST" if path.endswith("check") else "PUT", gw.url + path,
                                     content=full, headers=admin, timeout=30)
                assert resp.status_code == 400, resp.text[:300]
                assert words in resp.json()["error"]["message"]
                assert time.monotonic() - started < 2
        for path in ("/admin/policy/check", "/admin/policy"):
            resp = httpx.request("POST" if path.endswith("check") else "PUT", gw.url + path, content=leaky,
                                 headers=admin, timeout=10)
            assert resp.status_code == 400, resp.text
            message = resp.json()["error"]["message"]
            assert SECRET not in message and "EDGEGW_PROBE_URL" in message, message
        for page in ("/admin/policy/version", "/admin/status.json"):
            # The refusal is shown by the worker that refused it; each GET may reach either worker.
            texts = [httpx.get(gw.url + page, headers=admin, timeout=5).text for _ in range(30)]
            assert any("EDGEGW_PROBE_URL" in text for text in texts), texts[0][:500]
            assert not any(SECRET in text for text in texts)
        assert httpx.get(gw.url + "/healthz", timeout=5).status_code == 200
        log = gw.proc.log()
        assert "Traceback" not in log and "RecursionError" not in log, log[-2000:]
        assert SECRET not in log
        assert "EDGEGW_PROBE_URL" in log
    finally:
        gw.proc.stop()
        backend.proc.stop()
