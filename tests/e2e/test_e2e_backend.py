"""The gateway in front of a pool of two real `gpu_backend` replicas serving a tiny transformers model."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from testkit.harness import EDGEGW, ROOT, Proc, free_ports
from tests.conftest import gateway_config, start_gateway


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tmp = tmp_path_factory.mktemp("e2e")
    model_dir = tmp / "tiny"
    subprocess.run([*EDGEGW, "make-tiny-model", str(model_dir)], check=True, cwd=ROOT, capture_output=True)
    port = free_ports(2)  # the replicas listen on port and port + 1
    replicas = Proc([*EDGEGW, "backend", "--model", str(model_dir), "--served-model-name", "tiny",
                     "--replicas", "2", "--port", str(port), "--max-batch-size", "8"], name="replicas")
    try:
        for p in (port, port + 1):
            replicas.wait_http(f"http://127.0.0.1:{p}/healthz", timeout=180)
        config = gateway_config([])
        config["pools"][0].update(models=["tiny"], endpoints=[{"url": f"http://127.0.0.1:{p}"}
                                                               for p in (port, port + 1)])
        gw = start_gateway(Path(tmp), config)
    except Exception:
        replicas.stop()
        raise
    yield gw, port
    gw.proc.stop()
    replicas.stop()


def test_openai_client_through_gateway_to_real_replicas(stack: Any) -> None:
    gw, port = stack
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.token(), max_retries=0)
    chat = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hello"}],
                                          max_tokens=5, temperature=0)
    assert 0 < chat.usage.completion_tokens <= 5 and chat.usage.prompt_tokens > 0
    assert chat.choices[0].finish_reason in ("stop", "length")
    streamed = client.completions.create(model="tiny", prompt="abc", max_tokens=6, temperature=0, stream=True)
    text = "".join(c.choices[0].text for c in streamed if c.choices)
    plain = client.completions.create(model="tiny", prompt="abc", max_tokens=6, temperature=0)
    assert text == plain.choices[0].text  # greedy: streamed and plain agree
    assert [m.id for m in client.models.list()] == ["tiny"]


def test_generate_spreads_over_both_replicas(stack: Any) -> None:
    gw, port = stack
    headers = {"authorization": f"Bearer {gw.token()}"}
    for _ in range(12):
        resp = httpx.post(gw.url + "/v1/generate", json={"prompt": "hi", "max_tokens": 3}, headers=headers,
                          timeout=60)
        assert resp.status_code == 200 and isinstance(resp.json()["generated_text"], str)
    served = [_requests_served(f"http://127.0.0.1:{p}/metrics") for p in (port, port + 1)]
    assert all(n > 0 for n in served), served


def _requests_served(url: str) -> float:
    total = 0.0
    for line in httpx.get(url, timeout=5).text.splitlines():
        if line.startswith(("vllm:request_success_total", "edgegw_backend_requests_total")) and "{" in line:
            total += float(line.rsplit(" ", 1)[1])
    return total
