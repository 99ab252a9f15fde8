"""The official openai client against the gateway, which forwards to a real backend process."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.conftest import gateway_config, start_fake_backend, start_gateway


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    backend = start_fake_backend()
    gw = start_gateway(tmp_path_factory.mktemp("openai"), gateway_config([backend]))
    yield gw, openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.token(), max_retries=0)
    gw.proc.stop()
    backend.proc.stop()


def test_chat_and_completions(client: Any) -> None:
    gw, oc = client
    chat = oc.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}],
                                      max_tokens=3)
    assert chat.choices[0].message.content == "tok0 tok1 tok2"
    assert chat.usage.completion_tokens == 3
    comp = oc.completions.create(model="fake-model", prompt="hello", max_tokens=2)
    assert comp.choices[0].text == "tok0 tok1"


def test_streaming_chat_and_completions(client: Any) -> None:
    gw, oc = client
    stream = oc.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}],
                                        max_tokens=4, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "tok0 tok1 tok2 tok3 "
    stream = oc.completions.create(model="fake-model", prompt="x", max_tokens=2, stream=True)
    assert "".join(c.choices[0].text for c in stream) == "tok0 tok1 "


def test_embeddings_and_models(client: Any) -> None:
    gw, oc = client
    emb = oc.embeddings.create(model="fake-model", input=["a", "bbb"])
    assert [d.embedding[0] for d in emb.data] == [1.0, 3.0]
    assert [m.id for m in oc.models.list()] == ["fake-model"]


def test_generate_and_response_headers(client: Any) -> None:
    gw, _ = client
    resp = httpx.post(gw.url + "/v1/generate", json={"prompt": "hi", "max_tokens": 2},
                      headers={"authorization": f"Bearer {gw.token()}", "x-request-id": "req-123"})
    assert resp.status_code == 200
    assert resp.json()["generated_text"] == "tok0 tok1"
    assert resp.headers["x-request-id"] == "req-123"
    assert 0.0 < float(resp.headers["x-edgegw-overhead-ms"]) < 1000
    generated = httpx.post(gw.url + "/v1/generate", json={"prompt": "hi"},
                           headers={"authorization": f"Bearer {gw.token()}"})
    assert len(generated.headers["x-request-id"]) == 32  # generated when the client sent none


def test_metrics_and_access_log(client: Any) -> None:
    gw, oc = client
    oc.completions.create(model="fake-model", prompt="hello", max_tokens=2)
    assert gw.metric("edgegw_requests_total", route="inference", pool="default", status="200") >= 1
    assert gw.metric("edgegw_overhead_seconds_count", route="inference") >= 1
    assert gw.metric("edgegw_endpoint_healthy", pool="default") == 1
    log = gw.proc.log()
    line = next(ln for ln in log.splitlines() if '"path":"/v1/completions"' in ln)
    assert '"subject":"alice"' in line and '"completion_tokens":2' in line and '"status":200' in line


def test_several_workers_share_the_port_and_report_metrics_together(tmp_path: Any) -> None:
    from tests.conftest import start_gateway

    backend = start_fake_backend()
    gw = start_gateway(tmp_path, gateway_config([backend]), workers=2)
    try:
        headers = {"authorization": f"Bearer {gw.token()}"}
        with httpx.Client(base_url=gw.url, headers=headers) as client:
            for _ in range(30):  # a fresh connection each time spreads requests over both workers
                resp = httpx.post(gw.url + "/v1/completions", json={"model": "fake-model", "prompt": "x"},
                                  headers=headers)
                assert resp.status_code == 200
            assert client.get("/readyz").status_code == 200
        assert gw.metric("edgegw_requests_total", route="inference", status="200") == 30
        assert gw.metric("edgegw_endpoint_healthy", pool="default") == 1
    finally:
        gw.proc.stop()
        backend.proc.stop()
