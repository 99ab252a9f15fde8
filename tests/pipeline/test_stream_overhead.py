"""A stream's overhead is the gateway's own time, never the generation time it waits through."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from tests.conftest import gateway_config


def _access_line(gw: Any, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in gw.proc.log().splitlines():
            if request_id in line and line.startswith("{"):
                return orjson.loads(line)
        time.sleep(0.1)
    raise AssertionError(f"no access log line for {request_id}")


def test_a_streams_overhead_excludes_the_time_between_chunks(make_backend: Any, make_gateway: Any) -> None:
    backend = make_backend(token_delay=0.1)  # 20 tokens take ~2 s: the "generation"
    gw = make_gateway(gateway_config([backend]))
    headers = {"authorization": f"Bearer {gw.token()}", "x-request-id": "stream-overhead-1"}
    started = time.monotonic()
    with httpx.stream("POST", gw.url + "/v1/completions", headers=headers, timeout=30,
                      json={"model": "fake-model", "prompt": "hi", "max_tokens": 20, "stream": True}) as resp:
        assert resp.status_code == 200
        body = b"".join(resp.iter_bytes())
    took_ms = (time.monotonic() - started) * 1000
    assert body.count(b"data: ") >= 20 and took_ms >= 1900
    line = _access_line(gw, "stream-overhead-1")
    assert line["stream"] is True and line["status"] == 200
    # The waits for chunks are the upstream's; the gateway's share is a small part of the stream.
    assert line["upstream_ms"] >= 1900, line
    assert line["overhead_ms"] < 0.25 * line["duration_ms"], line
    assert abs(line["duration_ms"] - line["upstream_ms"] - line["overhead_ms"]) < 1.0
    # The histogram is fed the same figure: its sum stays far below the stream's duration.
    assert gw.metric("edgegw_overhead_seconds_sum") < 0.25 * took_ms / 1000
