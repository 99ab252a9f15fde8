"""The gateway's context-window check against a real backend, on the border: it never refuses what
the backend accepts, and what it refuses the backend would have refused too.

The tiny model's tokenizer is byte-level plus special tokens, so its longest token is `<|endoftext|>`
(13 bytes): a prompt made only of that token is exactly as long, in tokens, as the gateway's lower
bound (bytes / `max_token_bytes`) says.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backend.conftest import BackendProc, start_backend
from tests.conftest import gateway_config

LONGEST = "<|endoftext|>"
WINDOW = 64


@pytest.fixture(scope="module")
def short_backend(tiny_model: Path) -> Iterator[BackendProc]:
    backend = start_backend(tiny_model, "--max-model-len", str(WINDOW), name="tiny-64")
    yield backend
    backend.stop()


def _served(backend: BackendProc) -> float:
    return backend.metric("edgegw_backend_requests_total", endpoint="/v1/completions")


@pytest.mark.parametrize("declared", [True, False], ids=["declared", "discovered"])
def test_window_check_on_the_border(short_backend: BackendProc, make_gateway: Any, declared: bool) -> None:
    cfg = gateway_config([])
    entry = {"name": "tiny", "backend_name": "tiny-llama", "max_token_bytes": len(LONGEST.encode())}
    if declared:
        entry["context_length"] = WINDOW
    else:  # read from the backend's /v1/models (`max_model_len`)
        cfg["pools"][0]["discover_context_length"] = True
    cfg["pools"][0].update(endpoints=[{"url": short_backend.url}], models=[entry])
    gw = make_gateway(cfg)
    headers = {"authorization": f"Bearer {gw.token()}"}

    def complete(prompt: str, max_tokens: int) -> httpx.Response:
        return httpx.post(gw.url + "/v1/completions", headers=headers, timeout=60,
                          json={"model": "tiny", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0})

    # Exactly full: 62 prompt tokens + 2 fit a 64-token window. The gateway passes it on; the backend answers.
    resp = complete(LONGEST * (WINDOW - 2), 2)
    assert resp.status_code == 200, resp.text
    assert resp.json()["usage"]["prompt_tokens"] == WINDOW - 2 and resp.json()["model"] == "tiny"
    # One token over: the gateway refuses it without asking the backend...
    before = _served(short_backend)
    resp = complete(LONGEST * (WINDOW - 1), 2)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "context_length_exceeded"
    assert "at least 63 prompt tokens plus max_tokens 2" in resp.json()["error"]["message"]
    assert _served(short_backend) == before
    # ...and the backend would have refused it too.
    direct = httpx.post(short_backend.url + "/v1/completions", timeout=60,
                        json={"model": "tiny-llama", "prompt": LONGEST * (WINDOW - 1), "max_tokens": 2})
    assert direct.status_code == 400 and direct.json()["error"]["code"] == "context_length_exceeded"
    # Ordinary text is many more tokens than its bound: the gateway lets it through, the backend says no.
    resp = complete("a" * (WINDOW + 10), 2)
    assert resp.status_code == 400 and "context_length_exceeded" in resp.text and _served(short_backend) == before + 2  # (the direct request, and this one)
