"""Image URL schemes: `data:` is recognised in any case (so `DATA:` cannot skip the checks), remote URLs
are forwarded only for the schemes the route allows (`media.remote_urls`, https by default), and
anything else (`file:`, `gopher:`, `http:` by default, no scheme) is a 400 naming the field."""

# ruff: noqa: F811 - the tests take the imported `gw` fixture (test_media's media gateway) by name
from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from testkit.media_files import png
from tests.conftest import media_config, start_gateway
from tests.media.test_media import chat, gw, refused  # noqa: F401

SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
FIELD = "messages[0].content[0].image_url.url"


def image(url: str) -> list[dict[str, Any]]:
    return [{"type": "image_url", "image_url": {"url": url}}]


@pytest.mark.parametrize("prefix", ["DATA:", "Data:", "dAtA:"])
def test_data_urls_are_checked_whatever_their_case(gw: Any, prefix: str) -> None:
    svg = prefix + "image/svg+xml;base64," + base64.b64encode(SVG).decode()
    refused(gw, image(svg), FIELD, "not a recognised image format", packed=False)
    refused(gw, image(svg), FIELD, "not a recognised image format", packed=True)
    too_big = prefix + "image/png;BASE64," + base64.b64encode(png(pad_bytes=310_000)).decode()
    refused(gw, image(too_big), "messages[0].content[0]", "exceed 300000 bytes", packed=True)
    # A good one passes the gateway's checks and is forwarded as sent (the fake backend itself only
    # decodes lower-case `data:`; what a backend makes of the case is its own affair).
    before = gw.backend.stats()["requests"]
    chat(gw, image(prefix + "image/png;base64," + base64.b64encode(png()).decode()), packed=False)
    assert gw.backend.stats()["requests"] == before + 1


@pytest.mark.parametrize("url", ["file:///etc/passwd", "FILE:///etc/passwd", "gopher://127.0.0.1:6379/_INFO",
                                 "http://169.254.169.254/latest/meta-data/", "ftp://x/y.png", "/relative.png",
                                 " data:image/png;base64,AAAA", "javascript:alert(1)"])
def test_remote_urls_of_other_schemes_are_refused_by_default(gw: Any, url: str) -> None:
    refused(gw, image(url), FIELD, "not accepted on this route", packed=False)


def test_https_is_forwarded_by_default_and_http_where_the_route_allows_it(gw: Any, tmp_path: Path) -> None:
    before = gw.backend.stats()["requests"]
    chat(gw, image("https://images.example/cat.png"), packed=False)  # the fake backend fetches nothing
    assert gw.backend.stats()["requests"] == before + 1
    config = media_config(gw.backend)
    config["routes"][0]["media"]["remote_urls"] = ["http", "https"]
    other = start_gateway(tmp_path, config)
    try:
        chat(other, image("HTTP://images.example/cat.png"), packed=False)
        assert gw.backend.stats()["requests"] == before + 2
        resp = chat(other, image("file:///etc/passwd"), packed=False)
        assert resp.status_code == 400 and resp.json()["error"]["param"] == FIELD
        assert gw.backend.stats()["requests"] == before + 2
    finally:
        other.proc.stop()
