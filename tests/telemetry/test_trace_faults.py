"""Traces against a real OTLP receiver, with the faults a gateway meets: a malformed or untrusted
`traceparent`, a collector that answers 500, one that is slow, one that is gone."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.harness import free_port
from testkit.otlp_receiver import OtlpReceiver
from tests.conftest import gateway_config, start_fake_backend, start_gateway
from tests.plugins.conftest import rss_mb

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "my secret prompt"}], "max_tokens": 3}


@pytest.fixture(scope="module")
def backend() -> Any:
    b = start_fake_backend()
    yield b
    b.proc.stop()


def _gateway(tmp: Path, backend: Any, **telemetry: Any) -> Any:
    config = gateway_config([backend])
    config["telemetry"] = {"schedule_delay_ms": 50, **telemetry}
    config["routes"].insert(0, {"name": "recorded", "paths": ["/v1/chat/completions"], "models": ["recorded-*"],
                                "pool": "default", "telemetry": {"record_content": True}})
    config["pools"][0]["models"] = ["fake-model", "recorded-model"]
    return start_gateway(tmp, config)


def _post(gw: Any, headers: dict[str, Any] | None = None, body: dict[str, Any] | None = None) -> httpx.Response:
    return httpx.post(gw.url + "/v1/chat/completions", json=body or CHAT, timeout=10,
                      headers={"authorization": f"Bearer {gw.token()}", **(headers or {})})


def test_malformed_traceparent_is_ignored_and_a_new_trace_starts(tmp_path: Path, backend: Any) -> None:
    receiver = OtlpReceiver().start()
    gw = _gateway(tmp_path, backend, otlp_endpoint=receiver.url)
    try:
        bad = ["garbage", "00-" + "0" * 32 + "-b7ad6b7169203331-01", "00-xyz-abc-01", "ff-" + CLIENT_TRACE + "-b7ad6b7169203331-01",
               "00-" + CLIENT_TRACE + "-b7ad6b7169203331-01-extra" + "x" * 5000, "\u00e9" * 40]
        for value in bad:
            resp = _post(gw, {"traceparent": value.encode()})  # type: ignore[dict-item]  # raw bytes
            assert resp.status_code == 200, (value, resp.text)
        servers = receiver.wait_for(lambda s: s.name == "POST /v1/chat/completions" and s.kind == 2)
        deadline = time.monotonic() + 10
        while len(servers) < len(bad) and time.monotonic() < deadline:
            time.sleep(0.1)
            servers = [s for s in receiver.spans if s.name == "POST /v1/chat/completions"]
        assert len(servers) == len(bad)
        assert all(s.parent_id == "" and s.trace_id != CLIENT_TRACE for s in servers)
        # The backend got the gateway's own context, not the client's garbage.
        sent = backend.stats()["last_headers"]["traceparent"]
        assert sent.split("-")[1] == servers[-1].trace_id or sent.split("-")[1] in {s.trace_id for s in servers}
        assert receiver.content_types == {"application/x-protobuf"}
    finally:
        gw.proc.stop()
        receiver.stop()


def test_untrusted_clients_trace_context_is_replaced(tmp_path: Path, backend: Any) -> None:
    receiver = OtlpReceiver().start()
    gw = _gateway(tmp_path, backend, otlp_endpoint=receiver.url, trust_traceparent=False)
    try:
        resp = _post(gw, {"traceparent": f"00-{CLIENT_TRACE}-b7ad6b7169203331-01", "tracestate": "evil=1"})
        assert resp.status_code == 200
        server = receiver.wait_for(lambda s: s.name == "POST /v1/chat/completions")[0]
        assert server.trace_id != CLIENT_TRACE and server.parent_id == ""
        sent = backend.stats()["last_headers"]
        assert CLIENT_TRACE not in sent["traceparent"] and "tracestate" not in sent
        assert sent["traceparent"].split("-")[1] == server.trace_id
    finally:
        gw.proc.stop()
        receiver.stop()


def test_unsampled_requests_still_pass_a_trace_context_and_export_nothing(tmp_path: Path, backend: Any) -> None:
    receiver = OtlpReceiver().start()
    gw = _gateway(tmp_path, backend, otlp_endpoint=receiver.url, sample_ratio=0.0)
    try:
        assert _post(gw).status_code == 200
        sent = backend.stats()["last_headers"]["traceparent"]
        assert sent.startswith("00-") and int(sent.rsplit("-", 1)[1], 16) & 1 == 0  # joined, not sampled
        time.sleep(0.5)
        assert receiver.spans == []
    finally:
        gw.proc.stop()
        receiver.stop()


def test_content_is_recorded_only_on_the_route_that_opts_in(tmp_path: Path, backend: Any) -> None:
    receiver = OtlpReceiver().start()
    gw = _gateway(tmp_path, backend, otlp_endpoint=receiver.url)
    try:
        assert _post(gw).status_code == 200
        assert _post(gw, body={**CHAT, "model": "recorded-model"}).status_code == 200
        plain = receiver.wait_for(lambda s: s.name == "chat fake-model")[0]
        recorded = receiver.wait_for(lambda s: s.name == "chat recorded-model")[0]
        assert "gen_ai.input.messages" not in plain.attributes and "gen_ai.output.messages" not in plain.attributes
        assert "my secret prompt" in recorded.attributes["gen_ai.input.messages"]
        assert "tok0" in recorded.attributes["gen_ai.output.messages"]
    finally:
        gw.proc.stop()
        receiver.stop()


@pytest.mark.parametrize("fault", ["error", "slow", "down"])
def test_a_failing_collector_never_slows_requests_and_drops_are_counted(tmp_path: Path, backend: Any,
                                                                        fault: str) -> None:
    receiver = OtlpReceiver(mode=fault if fault != "down" else "ok", delay_s=5.0).start()
    url = receiver.url if fault != "down" else f"http://127.0.0.1:{free_port()}"
    if fault == "down":
        receiver.stop()
    gw = _gateway(tmp_path, backend, otlp_endpoint=url, max_queue_spans=64, max_batch_spans=16,
                  export_timeout_s=1)
    try:
        with httpx.Client(timeout=10) as client:
            headers = {"authorization": f"Bearer {gw.token()}"}
            slowest = 0.0
            for i in range(400):
                started = time.perf_counter()
                resp = client.post(gw.url + "/v1/chat/completions", json=CHAT, headers=headers)
                slowest = max(slowest, time.perf_counter() - started)
                assert resp.status_code == 200
                if i == 99:
                    rss_early = rss_mb(gw.proc.popen.pid)
        # A blocked export would hold a request for its 1 s timeout (slow: 5 s); none waits on it.
        assert slowest < 0.5, slowest
        reason = "export_failed" if fault == "error" else "queue_full"
        deadline = time.monotonic() + 10
        while gw.metric("edgegw_otel_spans_dropped_total", reason=reason) == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        dropped = gw.metric("edgegw_otel_spans_dropped_total")
        assert gw.metric("edgegw_otel_spans_dropped_total", reason=reason) > 0
        # 300 more requests (1500 spans) past the queue's bound did not grow the process.
        assert rss_mb(gw.proc.popen.pid) - rss_early < 15, (rss_early, dropped)
    finally:
        gw.proc.stop()
        if fault != "down":
            receiver.stop()


def test_a_rejected_request_ends_its_failing_stage_span_with_the_error(tmp_path: Path, backend: Any) -> None:
    """The stage that raised (here the JWT check) is the last stage span, in error; no inference span."""
    receiver = OtlpReceiver().start()
    gw = _gateway(tmp_path, backend, otlp_endpoint=receiver.url)
    try:
        resp = httpx.post(gw.url + "/v1/chat/completions", json=CHAT, timeout=10,
                          headers={"authorization": "Bearer not-a-token",
                                   "traceparent": f"00-{CLIENT_TRACE}-b7ad6b7169203331-01"})
        assert resp.status_code == 401
        code = resp.json()["error"]["code"]
        spans = {s.name: s for s in receiver.wait_for(lambda s: s.trace_id == CLIENT_TRACE and s.kind == 2)}
        deadline = time.monotonic() + 10
        while "jwt_auth" not in spans and time.monotonic() < deadline:
            time.sleep(0.05)
            spans = {s.name: s for s in receiver.trace(CLIENT_TRACE)}
        server, auth = spans["POST /v1/chat/completions"], spans["jwt_auth"]
        assert auth.parent_id == server.span_id and auth.status_code == 2  # ERROR
        assert auth.attributes["error.type"] == code
        assert server.attributes["http.response.status_code"] == 401 and server.attributes["error.type"] == code
        assert server.start_ns <= auth.start_ns <= auth.end_ns <= server.end_ns
        assert not any(name.startswith(("chat", "upstream attempt")) for name in spans)
    finally:
        gw.proc.stop()
        receiver.stop()
