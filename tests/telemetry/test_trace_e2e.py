"""One request through the gateway, a wasm plugin and the built-in backend (tiny model), exported to a
real OTLP/HTTP receiver: one trace, the span tree of docs/observability.md, the GenAI attributes."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from testkit.harness import EDGEGW, ROOT, Proc, free_port
from testkit.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.conftest import gateway_config, start_gateway
from tests.plugins.conftest import ROUTER_CONFIG, plugin_entry, plugins  # noqa: F401 - the fixture

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def stack(plugins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:  # noqa: F811
    tmp = tmp_path_factory.mktemp("otel-e2e")
    receiver = OtlpReceiver().start()
    model_dir = tmp / "tiny"
    subprocess.run([*EDGEGW, "make-tiny-model", str(model_dir)], check=True, cwd=ROOT, capture_output=True)
    port = free_port()
    backend = Proc([*EDGEGW, "backend", "--model", str(model_dir), "--served-model-name", "tiny",
                    "--port", str(port), "--max-batch-size", "4"], name="backend",
                   env={"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"})
    try:
        backend.wait_http(f"http://127.0.0.1:{port}/healthz", timeout=180)
        config = gateway_config([])
        config["pools"][0].update(models=["tiny"], endpoints=[{"url": f"http://127.0.0.1:{port}"}])
        config["plugins"] = [plugin_entry("router", plugins["router"], config=ROUTER_CONFIG)]
        config["routes"][0]["plugins"] = [{"name": "router", "phase": "routing"}]
        config["telemetry"] = {"otlp_endpoint": receiver.url, "schedule_delay_ms": 100, "service_name": "gw-test"}
        gw = start_gateway(Path(tmp), config)
    except Exception:
        backend.stop()
        receiver.stop()
        raise
    yield gw, port, receiver
    gw.proc.stop()
    backend.stop()
    receiver.stop()


def _by_name(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {s.name: s for s in spans}


def _wait_trace(receiver: OtlpReceiver, trace_id: str, names: set[str]) -> dict[str, ReceivedSpan]:
    receiver.wait_for(lambda s: s.trace_id == trace_id and s.name == "decode", timeout=20)
    receiver.wait_for(lambda s: s.trace_id == trace_id and s.service == "gw-test" and s.kind == 2, timeout=20)
    spans = _by_name(receiver.trace(trace_id))
    assert names <= set(spans), sorted(spans)
    return spans


def test_one_trace_from_client_through_plugin_to_backend_decode(stack: Any) -> None:
    gw, _, receiver = stack
    headers = {"authorization": f"Bearer {gw.token()}", "traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"}
    resp = httpx.post(gw.url + "/v1/chat/completions", headers=headers, timeout=60, json={
        "model": "tiny", "messages": [{"role": "user", "content": "secret prompt text"}], "max_tokens": 5,
        "temperature": 0.7})
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    spans = _wait_trace(receiver, CLIENT_TRACE, {
        "POST /v1/chat/completions", "jwt_auth", "wasm_routing", "plugin router", "pool_select", "chat tiny",
        "upstream attempt 1", "queue wait", "prefill", "decode"})
    gateway_spans = [s for s in receiver.trace(CLIENT_TRACE) if s.service == "gw-test"]
    backend_spans = [s for s in receiver.trace(CLIENT_TRACE) if s.service == "edgegw-backend"]
    server = next(s for s in gateway_spans if s.name == "POST /v1/chat/completions")
    backend = next(s for s in backend_spans if s.name == "POST /v1/chat/completions")
    # the tree: client -> gateway server -> stages and inference -> attempt -> backend -> queue/prefill/decode
    assert server.parent_id == CLIENT_SPAN and server.kind == 2  # SERVER
    for name in ("jwt_auth", "wasm_routing", "pool_select", "chat tiny"):
        assert spans[name].parent_id == server.span_id, name
    assert spans["plugin router"].parent_id == spans["wasm_routing"].span_id
    assert spans["plugin router"].attributes["edgegw.plugin.name"] == "router"
    assert spans["plugin router"].attributes["edgegw.plugin.version"].startswith("v1 sha256:")
    attempt = spans["upstream attempt 1"]
    assert attempt.parent_id == spans["chat tiny"].span_id
    assert attempt.attributes["edgegw.upstream.attempt"] == 1
    assert attempt.attributes["server.address"].startswith("http://127.0.0.1:")
    assert backend.parent_id == attempt.span_id
    for name in ("queue wait", "prefill", "decode"):
        assert spans[name].parent_id == backend.span_id and spans[name].service == "edgegw-backend"
    assert spans["queue wait"].end_ns <= spans["prefill"].start_ns + 1 <= spans["decode"].start_ns + 2
    assert backend.start_ns >= attempt.start_ns - 50_000_000  # clocks of one machine
    # GenAI attributes on the inference span
    gen = spans["chat tiny"].attributes
    assert gen["gen_ai.operation.name"] == "chat"
    assert gen["gen_ai.request.model"] == "tiny" and gen["gen_ai.response.model"] == "tiny"
    assert gen["gen_ai.request.max_tokens"] == 5 and gen["gen_ai.request.temperature"] == 0.7
    assert gen["gen_ai.usage.input_tokens"] == answer["usage"]["prompt_tokens"]
    assert gen["gen_ai.usage.output_tokens"] == answer["usage"]["completion_tokens"]
    assert gen["gen_ai.response.finish_reasons"] == [answer["choices"][0]["finish_reason"]]
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["http.request.method"] == "POST"
    # prompt and answer text are not recorded without the route's opt-in
    text = repr([s.attributes for s in receiver.trace(CLIENT_TRACE)])
    assert "secret prompt text" not in text and answer["choices"][0]["message"]["content"] not in text


def test_streamed_request_carries_time_to_first_token_and_backend_metrics(stack: Any) -> None:
    gw, port, receiver = stack
    trace_id = "5bf92f3577b34da6a3ce929d0e0e4736"
    headers = {"authorization": f"Bearer {gw.token()}", "traceparent": f"00-{trace_id}-{CLIENT_SPAN}-01"}
    with httpx.stream("POST", gw.url + "/v1/completions", headers=headers, timeout=60, json={
            "model": "tiny", "prompt": "abc", "max_tokens": 6, "stream": True,
            "stream_options": {"include_usage": True}}) as resp:
        assert resp.status_code == 200
        body = resp.read()
    assert body.rstrip().endswith(b"data: [DONE]")
    spans = _wait_trace(receiver, trace_id, {"text_completion tiny", "decode"})
    gen = spans["text_completion tiny"].attributes
    assert 0 < gen["gen_ai.server.time_to_first_token"] < 30
    assert gen["gen_ai.usage.output_tokens"] > 0
    for url in (gw.url, f"http://127.0.0.1:{port}"):
        text = httpx.get(url + "/metrics", timeout=10).text
        for name in ("gen_ai_client_token_usage_bucket", "gen_ai_server_time_to_first_token_seconds_bucket",
                     "gen_ai_server_time_per_output_token_seconds_bucket",
                     "gen_ai_server_request_duration_seconds_bucket"):
            assert f'{name}{{gen_ai_operation_name="text_completion",gen_ai_request_model="tiny"' in text, (url, name)


DEPLOY = ROOT / "deploy" / "observability"
_NAME = re.compile(r"\b(edgegw_[a-z0-9_]+|gen_ai_[a-z0-9_]+|vllm:[a-z0-9_:]+)")


def _expressions() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "alerts.yaml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return exprs


def _exported(text: str) -> tuple[set[str], set[str]]:
    """(families declared by # TYPE, series names with a sample) of a Prometheus text page."""
    declared, sampled = set(), set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            declared |= {name, *(name + s for s in ("_bucket", "_sum", "_count", "_total"))} if kind in (
                "histogram", "counter") else {name}
        elif line and not line.startswith("#"):
            sampled.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return declared, sampled


def test_every_metric_the_dashboard_and_alerts_use_is_exported(stack: Any) -> None:
    gw, port, _ = stack
    headers = {"authorization": f"Bearer {gw.token()}"}
    resp = httpx.post(gw.url + "/v1/chat/completions", headers=headers, timeout=60, json={
        "model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True})
    assert resp.status_code == 200
    declared, sampled = set(), set()
    for url in (gw.url, f"http://127.0.0.1:{port}"):
        d, s = _exported(httpx.get(url + "/metrics", timeout=10).text)
        declared |= d
        sampled |= s
    # metric names only: label names sit in `by (...)` and `{...}`
    used = {m for e in _expressions() for m in _NAME.findall(re.sub(r"by \([^)]*\)|\{[^}]*\}", " ", e))}
    assert len(used) > 25
    assert sorted(used - declared - sampled) == []
    # what real traffic fills in, with samples (the rest are declared, and fill in on their events)
    for name in ("edgegw_requests_total", "edgegw_overhead_seconds_bucket", "edgegw_endpoint_healthy",
                 "gen_ai_server_time_to_first_token_seconds_bucket", "gen_ai_client_token_usage_sum",
                 "gen_ai_server_time_per_output_token_seconds_bucket", "edgegw_usage_tokens_total",
                 "edgegw_usage_requests_total", "vllm:time_to_first_token_seconds_bucket",
                 "vllm:inter_token_latency_seconds_bucket", "edgegw_policy_info", "edgegw_plugin_active_version"):
        assert name in sampled, name


def test_alert_rules_and_dashboard_queries_pass_promtool(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is needed (Debian: apt-get install prometheus)"
    out = subprocess.run([promtool, "check", "rules", str(DEPLOY / "alerts.yaml")], capture_output=True, text=True)
    assert out.returncode == 0 and "SUCCESS: 8 rules found" in out.stdout, out.stdout + out.stderr
    # The dashboard's queries, as recording rules, so promtool parses each one.
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"].replace("$__rate_interval", "5m") for p in dashboard["panels"] for t in p.get("targets", [])]
    rules = {"groups": [{"name": "dashboard", "rules": [{"record": f"edgegw:dashboard_{i}", "expr": e}
                                                         for i, e in enumerate(exprs)]}]}
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump(rules))
    out = subprocess.run([promtool, "check", "rules", str(tmp_path / "dashboard.yaml")], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    for topic in ("route and status", "overhead", "time to first token", "inter-token", "429", "cache hit",
                  "plugin failures", "canary", "rollout", "policy versions", "healthy endpoints", "ejections",
                  "redis degraded", "partner"):
        assert topic in titles, topic
