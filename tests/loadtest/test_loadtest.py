"""`edgegw loadtest` against a real gateway and the fake backend on loopback: ramp-up and duration, SSE
timings, error classes, reports (the HTML opened in Chromium), sweeps, Ctrl-C and the loopback guard."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.client.loadtest.client import Target
from gateway.client.loadtest.runner import Plan, execute
from gateway.client.loadtest.workload import Workload, load_prompts
from testkit.harness import EDGEGW, ROOT, free_port
from tests.conftest import GatewayProc, gateway_config, start_fake_backend, start_gateway
from tests.ops.cdp import Browser

ARTIFACTS = ROOT / "test-artifacts"
TOKEN_DELAY_S = 0.02  # the fake backend's pause between streamed tokens: the ITL the tool must see
TIGHT_RPM = 10


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProc]:
    backend = start_fake_backend(name="lt", token_delay=TOKEN_DELAY_S)
    config = gateway_config([backend], server={"access_log": "off"})
    config["routes"] = [
        {"name": "inference", "paths": ["/v1/chat/completions"]},
        # A route with a tight limit so a load test meets 429s.
        {"name": "tight", "paths": ["/v1/completions"],
         "rate_limits": [{"name": "tight", "key": "subject", "requests_per_minute": TIGHT_RPM}]},
    ]
    gw = start_gateway(tmp_path_factory.mktemp("loadtest"), config)
    yield gw
    gw.proc.stop()
    backend.proc.stop()


def loadtest(gw: GatewayProc, *args: str, token: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "EDGEGW_LOADTEST_TOKEN": token or gw.token("loadtester")}
    return subprocess.run([*EDGEGW, "loadtest", gw.url, "--model", "fake-model", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_streaming_run_honours_ramp_up_and_duration_and_reports(gateway: GatewayProc, tmp_path: Path) -> None:
    users, ramp_up, duration, tokens = 8, 2.0, 4.0, 8
    started = time.monotonic()
    proc = loadtest(gateway, "--users", str(users), "--ramp-up", f"{ramp_up}s", "--duration", f"{duration}s",
                    "--stream", "--max-tokens", str(tokens), "--report", str(tmp_path), "--progress-every", "1s")
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "result.json").read_text())
    s = data["summary"]
    # Duration: the load ran for 4 s (+ the last requests finishing), within 10%.
    assert abs(s["wall_s"] - duration) <= 0.1 * duration, s["wall_s"]
    assert elapsed < duration + 6  # process start-up and reports included
    rows = [dict(zip(data["sample_columns"], row, strict=True)) for row in data["samples"]]
    assert max(r["start_s"] for r in rows) < duration
    # Ramp-up: user i sends its first request at i/N of the ramp-up; all are running by 7/8 of it.
    first = {u: min(r["start_s"] for r in rows if r["user"] == u) for u in range(users)}
    for u, at in first.items():
        assert abs(at - ramp_up * u / users) <= 0.1 * ramp_up, (u, at)
    assert data["timeseries"]["in_flight"][0] < users <= max(data["timeseries"]["in_flight"])
    # LLM timings from the real SSE stream: the first token at once, then one every 20 ms.
    assert s["errors"] == 0 and s["rate_limited"] == 0 and s["ok"] == s["requests"] > 50
    assert s["output_tokens"] == tokens * s["ok"]
    assert TOKEN_DELAY_S * 0.9 <= s["itl_s"]["p50"] <= TOKEN_DELAY_S * 1.6, s["itl_s"]
    assert s["itl_s"]["count"] == (tokens - 1) * s["ok"]
    assert s["ttft_s"]["p50"] < min(0.1, s["latency_s"]["p50"] / 4)  # the first event, not the whole stream
    assert s["latency_s"]["p50"] >= (tokens - 1) * TOKEN_DELAY_S
    assert s["latency_s"]["p50"] <= s["latency_s"]["p90"] <= s["latency_s"]["p99"]
    per_request = s["tokens_per_s_per_request"]["p50"]
    assert tokens / (s["latency_s"]["max"] + 0.001) <= per_request <= tokens / ((tokens - 1) * TOKEN_DELAY_S)
    assert s["overhead_ms"]["count"] == s["requests"] and s["overhead_ms"]["p50"] > 0
    # Live progress on stderr, the summary table on stdout.
    assert "users 8/8" in proc.stderr and "TTFT p50" in proc.stderr
    for text in ("time to first token", "inter-token latency", "output tokens/s per request", "429s 0"):
        assert text in proc.stdout, text
    # The HTML report renders in a real browser: tables and charts, nothing fetched from anywhere.
    html = (tmp_path / "report.html").read_text()
    assert "<script" not in html and not re.search(r"\b(src|href)\s*=|@import|url\(", html)
    browser = Browser(tmp_path / "chromium-profile")
    try:
        browser.goto((tmp_path / "report.html").as_uri())
        assert browser.js("document.querySelectorAll('svg.chart').length") == 5
        assert browser.js("document.querySelectorAll('svg.latency-time polyline').length") >= 3
        assert browser.js("document.querySelectorAll('svg.latency-histogram rect.bar').length") >= 5
        text = browser.js("document.body.textContent")
        assert "inter-token latency" in text and "No errors." in text
        ARTIFACTS.mkdir(exist_ok=True)
        browser.screenshot(ARTIFACTS / "loadtest-report.png")
        assert (ARTIFACTS / "loadtest-report.png").stat().st_size > 10_000
    finally:
        browser.close()


async def test_errors_are_classified_with_429s_apart(gateway: GatewayProc) -> None:
    workload = Workload(load_prompts(None), "fake-model", 4, stream=False, chat=False, temperature=None)
    plan = Plan(users=3, ramp_up_s=0, duration_s=1.5)
    token = gateway.token("limited-partner")
    limited = await execute(plan, Target(gateway.url + "/v1/completions", token, 10), workload)
    s = limited.samples
    assert sum(1 for x in s if x.ok) == TIGHT_RPM
    assert {x.status for x in s} == {200, 429}
    assert {x.error_code for x in s if x.status == 429} == {"rate_limit_exceeded"}
    unauthorised = await execute(Plan(users=1, ramp_up_s=0, duration_s=0.3, max_requests=3),
                                 Target(gateway.url + "/v1/completions", "not-a-jwt", 10), workload)
    assert [x.status for x in unauthorised.samples] == [401] * 3
    assert unauthorised.samples[0].error_code
    closed_port = await execute(Plan(users=1, ramp_up_s=0, duration_s=0.3, max_requests=2),
                                Target(f"http://127.0.0.1:{free_port()}/v1/completions", token, 2), workload)
    assert [(x.status, x.error_code) for x in closed_port.samples] == [(0, "connect_error")] * 2
    # A stream the backend cuts after two tokens: a 200 whose SSE ends with the gateway's error event.
    # One request only, so the pool does not eject the backend for the tests that follow.
    streaming = Workload(load_prompts(None), "fake-model", 6, stream=True, chat=True, temperature=None)
    cut = await execute(Plan(users=1, ramp_up_s=0, duration_s=1, max_requests=1),
                        Target(gateway.url + "/v1/chat/completions", token, 10,
                               {"x-fake-fault": "die-mid-stream:2"}), streaming)
    (broken,) = cut.samples
    assert (broken.status, broken.ok, broken.error_code, len(broken.token_times)) == (
        200, False, "upstream_stream_error", 2)
    from gateway.client.loadtest.metrics import summarise

    summary = summarise(limited.samples + unauthorised.samples + closed_port.samples + cut.samples, 2.0)
    by = summary["errors_by_status_code"]
    assert by["429 rate_limit_exceeded"] == summary["rate_limited"] >= 1
    assert by["transport connect_error"] == 2 and sum(v for k, v in by.items() if k.startswith("401")) == 3
    assert by["200 upstream_stream_error"] == 1
    assert summary["errors"] == 6  # 401s, connect errors and the cut stream; the 429s are counted apart


def test_open_loop_sweep_finds_no_errors_and_writes_reports(gateway: GatewayProc, tmp_path: Path) -> None:
    proc = loadtest(gateway, "--sweep", "rate=5,20", "--duration", "2s", "--ramp-up", "0.5s", "--users", "50",
                    "--max-tokens", "4", "--quiet", "--report", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "result.json").read_text())
    assert [p["load"] for p in data["points"]] == [5, 20] and len(data["runs"]) == 2
    low, high = data["points"]
    assert 4 <= low["requests"] <= 16 and 22 <= high["requests"] <= 50  # Poisson around 8.75 and 35
    assert data["knee"]["knee"] == 20 and data["knee"]["errors_start"] is None
    html = (tmp_path / "report.html").read_text()
    assert 'id="knee"' in html and "sweep-latency" in html and "knee 20" in html
    assert "knee: rate = 20" in proc.stdout
    browser = Browser(tmp_path / "chromium-profile")
    try:
        browser.goto((tmp_path / "report.html").as_uri())
        assert browser.js("document.querySelectorAll('svg.sweep-latency polyline').length") == 3
        assert browser.js("document.querySelectorAll('svg.chart line.mark').length") == 3  # the knee, marked
        assert browser.js("document.querySelectorAll('#sweep tr').length") == 3
        assert browser.js("document.querySelectorAll('details').length") == 2  # each point's own report
        ARTIFACTS.mkdir(exist_ok=True)
        browser.screenshot(ARTIFACTS / "loadtest-sweep.png")
    finally:
        browser.close()


def test_ctrl_c_stops_cleanly_with_a_partial_report(gateway: GatewayProc, tmp_path: Path) -> None:
    env = {**os.environ, "EDGEGW_LOADTEST_TOKEN": gateway.token("loadtester")}
    proc = subprocess.Popen([*EDGEGW, "loadtest", gateway.url, "--model", "fake-model", "--users", "4",
                             "--duration", "60s", "--stream", "--max-tokens", "50", "--report", str(tmp_path)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=15)
    assert time.monotonic() - sent < 5
    assert proc.returncode == 130, err
    data = json.loads((tmp_path / "result.json").read_text())
    assert data["interrupted"] and data["summary"]["ok"] >= 1 and data["cancelled"] <= 4
    assert data["summary"]["wall_s"] < 10
    assert "partial report" in out and (tmp_path / "report.html").exists()


def test_refuses_remote_targets_and_oversized_runs(tmp_path: Path) -> None:
    def run(*args: str) -> Any:
        return subprocess.run([*EDGEGW, "loadtest", *args, "--model", "m", "--report", str(tmp_path)], cwd=ROOT,
                              capture_output=True, text=True, timeout=30)

    remote = run("http://192.0.2.10:8080")
    assert remote.returncode == 2 and "not a loopback address" in remote.stderr and "--allow-remote" in remote.stderr
    long = run("http://127.0.0.1:9", "--duration", "2h")
    assert long.returncode == 2 and "--duration" in long.stderr
    assert not (tmp_path / "result.json").exists()
