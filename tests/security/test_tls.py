"""TLS at the edge: the openai SDK over https, client certificates (mTLS), certificate reload on change."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from cryptography import x509

from testkit.harness import EDGEGW, Proc, free_port
from tests.conftest import FakeBackendProc, gateway_config, start_fake_backend
from tests.security.certs import Authority


class TlsGateway:
    def __init__(self, proc: Proc, port: int, config_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.url = f"https://127.0.0.1:{port}"
        self.config_path = config_path

    def token(self) -> str:
        from gateway.auth.mint import mint_token
        from gateway.features import load_config

        return mint_token(load_config(self.config_path).issuers[0], "alice")


def start_tls_gateway(tmp_path: Path, backend: FakeBackendProc, tls: dict[str, Any], ca: Authority,
                      workers: int = 1, **server: Any) -> TlsGateway:
    config = gateway_config([backend])
    config["server"].update(server, tls=tls)
    port = free_port()
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = Proc([*EDGEGW, "serve", "--config", str(path), "--port", str(port), "--workers", str(workers)],
                name="gateway-tls")
    deadline = time.monotonic() + 60
    while True:  # ready once the TCP port accepts (a TLS handshake may need a client certificate)
        if not proc.alive():
            raise RuntimeError(proc.log())
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.stop()
                raise TimeoutError(proc.log()) from None
            time.sleep(0.05)
    return TlsGateway(proc, port, path)


def client_context(ca: Authority, tmp_path: Path, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ca_file = tmp_path / f"trust-{id(ca)}.pem"
    ca_file.write_bytes(ca.cert_pem)
    ctx = ssl.create_default_context(cafile=str(ca_file))
    if cert:
        ctx.load_cert_chain(*map(str, cert))
    return ctx


def served_serial(port: int, ctx: ssl.SSLContext) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


@pytest.fixture(scope="module")
def backend() -> Iterator[FakeBackendProc]:
    b = start_fake_backend()
    yield b
    b.proc.stop()


def test_openai_sdk_over_https_and_plain_http_refused(tmp_path: Path, backend: FakeBackendProc) -> None:
    ca = Authority()
    cert, key = ca.issue("localhost").write(tmp_path, "server")
    gw = start_tls_gateway(tmp_path, backend, {"cert_file": str(cert), "key_file": str(key)}, ca)
    try:
        ctx = client_context(ca, tmp_path)
        with httpx.Client(verify=ctx) as http:
            oc = openai.OpenAI(base_url=gw.url + "/v1", api_key=gw.token(), max_retries=0, http_client=http)
            chat = oc.chat.completions.create(model="fake-model", messages=[{"role": "user", "content": "hi"}],
                                              max_tokens=3)
            assert chat.choices[0].message.content == "tok0 tok1 tok2"
            stream = oc.completions.create(model="fake-model", prompt="x", max_tokens=2, stream=True)
            assert "".join(c.choices[0].text for c in stream) == "tok0 tok1 "
        # ALPN says HTTP/1.1 (the listener does not speak HTTP/2), TLS 1.2 is the floor.
        with socket.create_connection(("127.0.0.1", gw.port)) as raw:
            alpn = client_context(ca, tmp_path)
            alpn.set_alpn_protocols(["h2", "http/1.1"])
            with alpn.wrap_socket(raw, server_hostname="localhost") as tls:
                assert tls.selected_alpn_protocol() == "http/1.1"
                assert tls.version() in ("TLSv1.2", "TLSv1.3")
        # Over TLS 1.2 only forward-secret AEAD suites are offered: a client limited to CBC is refused.
        tls12 = client_context(ca, tmp_path)
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        with socket.create_connection(("127.0.0.1", gw.port)) as raw, \
                tls12.wrap_socket(raw, server_hostname="localhost") as tls:
            name = tls.cipher()[0]
            assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name), name
        tls12.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA")
        with pytest.raises(ssl.SSLError), socket.create_connection(("127.0.0.1", gw.port)) as raw:
            tls12.wrap_socket(raw, server_hostname="localhost")
        # A plain-HTTP request on the TLS port gets no HTTP answer.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{gw.port}/healthz", timeout=5)
    finally:
        gw.proc.stop()


def test_mtls_required_refuses_missing_or_foreign_client_certificates(tmp_path: Path,
                                                                      backend: FakeBackendProc) -> None:
    server_ca, client_ca, stranger_ca = Authority("server CA"), Authority("partner CA"), Authority("other CA")
    cert, key = server_ca.issue("localhost").write(tmp_path, "server")
    ca_file = tmp_path / "clients.pem"
    ca_file.write_bytes(client_ca.cert_pem)
    gw = start_tls_gateway(tmp_path, backend, {"cert_file": str(cert), "key_file": str(key),
                                               "client_ca_file": str(ca_file), "client_auth": "required"},
                           server_ca)
    try:
        good = client_ca.issue("partner-a", server=False).write(tmp_path, "partner")
        foreign = stranger_ca.issue("partner-a", server=False).write(tmp_path, "stranger")
        for cert_pair in (None, foreign):
            with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
                httpx.get(gw.url + "/healthz", verify=client_context(server_ca, tmp_path, cert_pair), timeout=5)
        resp = httpx.get(gw.url + "/healthz", verify=client_context(server_ca, tmp_path, good), timeout=5)
        assert resp.status_code == 200
        resp = httpx.post(gw.url + "/v1/completions", json={"model": "fake-model", "prompt": "x", "max_tokens": 1},
                          headers={"authorization": f"Bearer {gw.token()}"},
                          verify=client_context(server_ca, tmp_path, good), timeout=10)
        assert resp.status_code == 200, resp.text
    finally:
        gw.proc.stop()


def test_certificate_is_reloaded_when_its_files_change(tmp_path: Path, backend: FakeBackendProc) -> None:
    ca = Authority()
    first = ca.issue("localhost")
    cert, key = first.write(tmp_path, "server")
    gw = start_tls_gateway(tmp_path, backend, {"cert_file": str(cert), "key_file": str(key)}, ca, workers=2)
    try:
        ctx = client_context(ca, tmp_path)
        assert served_serial(gw.port, ctx) == first.serial
        # A half-written pair (new certificate, old key) is not loaded: the old pair keeps serving.
        second = ca.issue("localhost")
        cert.write_bytes(second.cert_pem)
        time.sleep(1.2)
        assert {served_serial(gw.port, ctx) for _ in range(6)} == {first.serial}
        key.write_bytes(second.key_pem)
        deadline = time.monotonic() + 10
        while served_serial(gw.port, ctx) != second.serial:
            assert time.monotonic() < deadline, "the new certificate was never served"
            time.sleep(0.2)
        time.sleep(1.2)  # every worker has looked at the files by now
        assert {served_serial(gw.port, ctx) for _ in range(8)} == {second.serial}
        assert httpx.get(gw.url + "/healthz", verify=ctx, timeout=5).status_code == 200
        assert "do not load" in gw.proc.log() and "Traceback" not in gw.proc.log()
    finally:
        gw.proc.stop()


def test_unfinished_handshakes_are_dropped_after_the_header_timeout(tmp_path: Path,
                                                                   backend: FakeBackendProc) -> None:
    ca = Authority()
    cert, key = ca.issue("localhost").write(tmp_path, "server")
    gw = start_tls_gateway(tmp_path, backend, {"cert_file": str(cert), "key_file": str(key)}, ca,
                           header_timeout_s=1)
    try:
        silent = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(20)]
        partial = [socket.create_connection(("127.0.0.1", gw.port)) for _ in range(20)]
        for s in partial:
            s.sendall(b"\x16\x03\x01\x02\x00")  # the start of a ClientHello, never finished
        started = time.monotonic()
        for s in silent + partial:
            s.settimeout(6)
            try:
                assert s.recv(1024) == b""
            except ConnectionResetError:
                pass
        assert time.monotonic() - started < 4  # 1 s, not uvloop's default 60 s
        assert httpx.get(gw.url + "/healthz", verify=client_context(ca, tmp_path), timeout=5).status_code == 200
    finally:
        for s in silent + partial:
            s.close()
        gw.proc.stop()
