"""A preprocess plugin sees a MessagePack request as canonical JSON, media included as OpenAI base64
parts: the example redact plugin rewrites the text of a request with an image, and the backend gets
the redacted text, the clamped max_tokens and the image's exact bytes."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from testkit.media_files import png
from tests.conftest import gateway_config, start_fake_backend, start_gateway
from tests.plugins.conftest import REDACT_CONFIG, plugin_entry, plugins  # noqa: F401 - the fixture


@pytest.fixture(scope="module")
def env(plugins: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:  # noqa: F811
    backend = start_fake_backend()
    cfg = gateway_config([backend])
    cfg["pools"][0]["image_models"] = ["fake-model"]
    cfg["plugins"] = [plugin_entry("redact", plugins["redact"], config=REDACT_CONFIG)]
    cfg["routes"][0]["plugins"] = [{"name": "redact", "phase": "preprocess"}]
    gw = start_gateway(tmp_path_factory.mktemp("media-plugins"), cfg)
    yield gw, backend
    gw.proc.stop()
    backend.proc.stop()


def test_preprocess_plugin_rewrites_a_msgpack_request_and_the_image_survives(env: Any) -> None:
    gw, backend = env
    image = png(20, 20)
    body = {"model": "fake-model", "max_tokens": 500, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "mail jane.doe@example.com about this"},
        {"type": "image", "data": image, "mime_type": "image/png"}]}]}
    resp = httpx.post(gw.url + "/v1/chat/completions", content=msgpack.packb(body, use_bin_type=True), timeout=10,
                      headers={"authorization": f"Bearer {gw.token()}", "content-type": "application/msgpack"})
    assert resp.status_code == 200, resp.text
    stats = backend.stats()
    assert stats["last_headers"]["x-edgegw-redactions"] == "1"  # the plugin read the text as JSON
    assert stats["last_media"] == [{"kind": "image_url", "mime": "image/png", "bytes": len(image),
                                    "sha256": hashlib.sha256(image).hexdigest()}]
    assert resp.json()["usage"]["completion_tokens"] == 16  # max_tokens clamped by the plugin
