"""`server:` limits and TLS in the config: defaults, validation errors naming the key, start-up checks."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import ConfigError
from gateway.features import load_config
from testkit.harness import EDGEGW, ROOT
from tests.security.certs import Authority

BASE: dict[str, Any] = {
    "issuers": [{"name": "t", "issuer": "https://t", "algorithms": ["HS256"], "secret_env": "EDGEGW_TEST_SECRET"}],
    "pools": [{"name": "p", "models": ["m"], "endpoints": [{"url": "http://127.0.0.1:1"}]}],
    "routes": [{"name": "r", "paths": ["/v1/completions"]}],
    "admin": {"issuer": "t"},
}


def write(tmp_path: Path, server: dict[str, Any]) -> Path:
    path = tmp_path / "gw.yaml"
    path.write_text(yaml.safe_dump({**BASE, "server": server}))
    return path


def test_safe_defaults(tmp_path: Path) -> None:
    server = load_config(write(tmp_path, {})).server
    assert server.header_timeout_s <= 10 and 16384 <= server.max_header_bytes <= 65536
    assert (server.keepalive_timeout_s, server.body_timeout_s, server.max_headers) == (5.0, 60.0, 100)
    assert server.max_connections == 4096 and server.tls is None


@pytest.mark.parametrize(("server", "key", "problem"), [
    ({"header_timeout_s": 0}, "server.header_timeout_s", "at least"),
    ({"max_header_bytes": 10_000_000}, "server.max_header_bytes", "at most"),
    ({"max_connections": 0}, "server.max_connections", "at least"),
    ({"tls": {"key_file": "k.pem"}}, "server.tls.cert_file", "is required"),
    ({"tls": {"cert_file": "missing.crt", "key_file": "missing.key"}}, "server.tls.cert_file", "file not found"),
    ({"tls": {"cert_file": "gw.yaml", "key_file": "gw.yaml", "client_auth": "required"}},
     "server.tls.client_ca_file", "needs the CA"),
    ({"tls": {"cert_file": "gw.yaml", "key_file": "gw.yaml", "min_version": "1.0"}},
     "server.tls.min_version", "must be one of"),
])
def test_invalid_server_settings_name_the_key(tmp_path: Path, server: dict[str, Any], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, server))
    assert err.value.key == key and problem in err.value.problem


def test_serve_refuses_a_key_that_does_not_match_the_certificate(tmp_path: Path) -> None:
    ca = Authority()
    cert, _ = ca.issue("localhost").write(tmp_path, "a")
    _, other_key = ca.issue("localhost").write(tmp_path, "b")
    path = write(tmp_path, {"tls": {"cert_file": "a.crt", "key_file": "b.key"}})
    assert load_config(path).server.tls is not None  # the files exist: the loader is satisfied
    proc = subprocess.run([*EDGEGW, "serve", "--config", str(path), "--port", "1"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0
    assert "server.tls: cannot load the certificate, key or client CA" in proc.stderr
    assert "Traceback" not in proc.stderr and other_key.exists()
