"""Per-partner usage: counters by the policy's labels with a series cap, `GET /admin/usage` across
workers (files) and replicas (Redis), its parameter checks, prices, and `edgegw usage`."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.harness import EDGEGW, ROOT, RedisServer
from tests.conftest import gateway_config, start_fake_backend, start_gateway

PRICES = {"fake-model": {"input_per_1m": 1000.0, "output_per_1m": 2000.0}}


@pytest.fixture(scope="module")
def backend() -> Any:
    b = start_fake_backend()
    yield b
    b.proc.stop()


def _config(backend: Any, **usage: Any) -> dict[str, Any]:
    config = gateway_config([backend])
    config["pools"][0]["prices"] = PRICES
    config["telemetry"] = {"usage": {"labels": ["issuer", "subject", "claim:tenant", "model", "route"], **usage}}
    return config


def _send(gw: Any, subject: str, n: int = 1, tenant: str | None = None) -> list[dict[str, Any]]:
    headers = {"authorization": f"Bearer {gw.token(subject, tenant=tenant)}"}
    out = []
    for _ in range(n):
        resp = httpx.post(gw.url + "/v1/completions", headers=headers, timeout=10,
                          json={"model": "fake-model", "prompt": "hello there", "max_tokens": 3})
        assert resp.status_code == 200, resp.text
        out.append(resp.json()["usage"])
    return out


def _usage(gw: Any, token: str | None = None, **params: str) -> httpx.Response:
    token = token or gw.token("ops", scopes=["admin"])
    return httpx.get(gw.url + "/admin/usage", params=params, headers={"authorization": f"Bearer {token}"}, timeout=10)


def test_usage_by_partner_capped_priced_and_reported(tmp_path: Path, backend: Any) -> None:
    gw = start_gateway(tmp_path, _config(backend, max_series=4))
    try:
        alice = _send(gw, "alice", 3, tenant="acme")
        _send(gw, "bob", 1, tenant="globex")
        for i in range(30):  # far more partners than the cap
            _send(gw, f"drive-by-{i}")
        # /metrics: at most max_series label sets, the rest under `other` (model and route kept)
        lines = [ln for ln in httpx.get(gw.url + "/metrics", timeout=5).text.splitlines()
                 if ln.startswith("edgegw_usage_requests_total{")]
        assert len(lines) <= 4 + 1, lines
        other = [ln for ln in lines if 'subject="other"' in ln]
        assert other and 'issuer="other"' in other[0] and 'model="fake-model"' in other[0]
        assert 'route="inference"' in other[0] and 'tenant="other"' in other[0]
        assert gw.metric("edgegw_usage_overflow_total") >= 30 + 4 - 4 - 2
        assert gw.metric("edgegw_usage_requests_total", subject="alice", tenant="acme") == 3
        assert gw.metric("edgegw_usage_tokens_total", subject="alice", type="input") == \
            sum(u["prompt_tokens"] for u in alice)

        data = _usage(gw, since="1h", by="subject,model").json()
        assert data["scope"] == "replica" and "this replica" in data["note"]
        assert data["by"] == ["subject", "model"]
        rows = {r["subject"]: r for r in data["rows"]}
        assert rows["alice"]["requests"] == 3 and rows["bob"]["requests"] == 1
        assert rows["alice"]["input_tokens"] == sum(u["prompt_tokens"] for u in alice)
        assert rows["alice"]["output_tokens"] == sum(u["completion_tokens"] for u in alice)
        expected = (rows["alice"]["input_tokens"] * 1000 + rows["alice"]["output_tokens"] * 2000) / 1e6
        assert rows["alice"]["cost"] == pytest.approx(expected)
        assert data["totals"]["requests"] == 34 and "other" in rows
        tenants = {r["tenant"]: r["requests"] for r in _usage(gw, since="2h", by="tenant").json()["rows"]}
        assert tenants["acme"] == 3 and tenants["globex"] == 1

        # The CLI, as an operator runs it
        env_token = gw.token("ops", scopes=["admin"])
        base = [*EDGEGW, "usage", "--gateway", gw.url, "--token", env_token, "--since", "7d", "--by", "subject,model"]
        table = subprocess.run(base, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert table.returncode == 0, table.stderr
        assert "alice" in table.stdout and "fake-model" in table.stdout and "this replica" in table.stdout
        rows_csv = list(csv.DictReader(io.StringIO(subprocess.run(
            [*base, "--csv"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout)))
        assert {"subject": "alice", "model": "fake-model", "requests": "3"}.items() <= \
            next(r for r in rows_csv if r["subject"] == "alice").items()
        as_json = json.loads(subprocess.run([*base, "--json"], cwd=ROOT, capture_output=True, text=True,
                                            timeout=60).stdout)
        assert as_json["totals"]["requests"] == 34
        bad = subprocess.run([*base[:-2], "--by", "colour"], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and "by: unknown label 'colour'" in bad.stderr
    finally:
        gw.proc.stop()


@pytest.mark.parametrize("params, param", [
    ({"since": "yesterday-ish"}, "since"), ({"since": "9999999999999"}, "since"), ({"by": "colour"}, "by"),
    ({"by": "subject,subject"}, "by"), ({"until": "now"}, "until"), ({"since": "7d", "bogus": "1"}, "bogus")])
def test_admin_usage_names_the_bad_parameter(tmp_path: Path, backend: Any, params: dict[str, str],
                                             param: str) -> None:
    gw = _shared_gateway(tmp_path, backend)
    resp = _usage(gw, **params)
    assert resp.status_code == 400 and resp.json()["error"]["param"] == param, resp.text


def test_admin_usage_is_admin_only(tmp_path: Path, backend: Any) -> None:
    gw = _shared_gateway(tmp_path, backend)
    assert httpx.get(gw.url + "/admin/usage", timeout=5).status_code == 401
    assert _usage(gw, token=gw.token("partner")).status_code == 403


_gateways: dict[str, Any] = {}


def _shared_gateway(tmp_path: Path, backend: Any) -> Any:
    gw = _gateways.get(backend.url)
    if gw is None or not gw.proc.alive():
        gw = _gateways[backend.url] = start_gateway(tmp_path, _config(backend))
    return gw


@pytest.fixture(scope="module", autouse=True)
def _stop_shared() -> Any:
    yield
    for gw in _gateways.values():
        gw.proc.stop()


def test_usage_adds_up_across_workers(tmp_path: Path, backend: Any) -> None:
    gw = start_gateway(tmp_path, _config(backend), workers=2)
    try:
        _send(gw, "alice", 40)
        time.sleep(2.5)  # each worker writes its buckets every 2 s
        for _ in range(4):  # whichever worker answers, it counts both
            data = _usage(gw, since="1h", by="subject").json()
            assert data["totals"]["requests"] == 40, data
    finally:
        gw.proc.stop()


def test_usage_adds_up_across_replicas_through_redis(tmp_path: Path, backend: Any) -> None:
    redis = RedisServer().start()
    try:
        config = _config(backend)
        config["redis"] = {"url": redis.url, "key_prefix": "usagetest"}
        one, two = start_gateway(tmp_path, config), start_gateway(tmp_path, config)
        try:
            _send(one, "alice", 5)
            _send(two, "alice", 7)
            _send(two, "bob", 2)
            time.sleep(2.5)  # flushed to Redis every 2 s
            data = _usage(one, since="24h", by="subject").json()
            assert data["scope"] == "cluster" and "every replica" in data["note"]
            assert {r["subject"]: r["requests"] for r in data["rows"]} == {"alice": 12, "bob": 2}
        finally:
            one.proc.stop()
            two.proc.stop()
    finally:
        redis.stop()


def test_a_flood_of_distinct_subjects_stays_within_the_cap() -> None:
    """30,000 partners through one worker's recorder: its series, its Prometheus children and its
    pending hourly buckets stay at the cap (plus the one `other` set)."""
    import tracemalloc

    from gateway.config.schema import RouteConfig
    from gateway.context import RequestContext, Usage
    from gateway.telemetry.config import UsageConfig
    from gateway.telemetry.metrics import usage_counters
    from gateway.telemetry.usage import UsageRecorder

    recorder = UsageRecorder(UsageConfig(labels=("issuer", "subject", "route"), max_series=50))
    route = RouteConfig(name="r", paths=("/v1/completions",))

    def one(i: int) -> None:
        ctx = RequestContext(request_id="x", method="POST", path="/v1/completions", headers={}, client_ip="")
        ctx.route, ctx.issuer, ctx.subject, ctx.usage = route, "idp", f"subject-{i}", Usage(10, 2)
        recorder.record(ctx)

    for i in range(1000):
        one(i)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(1000, 30_000):
        one(i)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(recorder._series) == 51  # 50 partners and ("other", "other", "r")
    taken = recorder.take()  # the hourly buckets the store would write
    assert sum(len(series) for series in taken.values()) <= 51
    requests, _ = usage_counters(recorder.names)
    assert len(list(requests.collect())[0].samples) <= 2 * 51  # _total and _created per label set
    assert grown < 256 * 1024, grown
    other = taken[max(taken)][("other", "other", "r")]
    assert other[0] == 30_000 - 50 and other[1] == 10 * (30_000 - 50)


def test_counts_across_an_hour_boundary_land_in_their_hours(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recorder counts into plain numbers and hands them out by hour at `take`: requests on either
    side of an hour's end are in their own hours, whenever `take` runs."""
    import gateway.telemetry.usage as usage_module
    from gateway.config.schema import RouteConfig
    from gateway.context import RequestContext, Usage
    from gateway.telemetry.config import UsageConfig
    from gateway.telemetry.usage import UsageRecorder

    now = [1000 * 3600 + 3590.0]
    monkeypatch.setattr(usage_module.time, "time", lambda: now[0])
    recorder = UsageRecorder(UsageConfig(labels=("subject", "route"), max_series=10))
    route = RouteConfig(name="r", paths=("/v1/completions",))

    def one(subject: str, tokens: int) -> None:
        ctx = RequestContext(request_id="x", method="POST", path="/v1/completions", headers={}, client_ip="")
        ctx.route, ctx.issuer, ctx.subject, ctx.usage = route, "idp", subject, Usage(tokens, 1, 0)
        recorder.record(ctx)

    one("a", 5)
    one("b", 7)
    assert recorder.take() == {1000: {("a", "r"): [1, 5, 1, 0], ("b", "r"): [1, 7, 1, 0]}}
    one("a", 3)
    now[0] += 20  # the next hour
    one("a", 2)
    one("a", 2)
    assert recorder.take() == {1000: {("a", "r"): [1, 3, 1, 0]}, 1001: {("a", "r"): [2, 4, 2, 0]}}
    assert recorder.take() == {}
