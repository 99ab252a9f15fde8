"""`edgegw loadtest` never follows a redirect: a loopback target answering 307 to another address must
not get the load re-sent there (that would escape the loopback-only rule). Each 307 counts as an error."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from testkit.harness import EDGEGW, ROOT


class Counting(BaseHTTPRequestHandler):
    """Answers every request with `status` and a `location` pointing at `location`; counts them."""

    status = 200
    location = ""
    hits: list[str]

    def _answer(self) -> None:
        self.hits.append(self.path)
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        body = b'{"data": [{"id": "m"}]}' if self.status == 200 else b""
        self.send_response(self.status)
        if self.location:
            self.send_header("location", self.location + self.path)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


def serve(host: str, status: int, location: str = "") -> tuple[ThreadingHTTPServer, list[str]]:
    hits: list[str] = []
    handler = type("Handler", (Counting,), {"status": status, "location": location, "hits": hits})
    server = ThreadingHTTPServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, hits


@pytest.fixture
def redirecting() -> Iterator[tuple[str, list[str], list[str]]]:
    # The elsewhere server stands for a remote address; 127.0.0.2 keeps the test on this machine.
    elsewhere, elsewhere_hits = serve("127.0.0.2", 200)
    other = f"http://127.0.0.2:{elsewhere.server_address[1]}"
    front, front_hits = serve("127.0.0.1", 307, other)
    yield f"http://127.0.0.1:{front.server_address[1]}", front_hits, elsewhere_hits
    front.shutdown()
    elsewhere.shutdown()


@pytest.mark.parametrize("model", [True, False])
def test_redirects_are_errors_and_never_followed(redirecting: tuple[str, list[str], list[str]], tmp_path: Path,
                                                 model: bool) -> None:
    url, front_hits, elsewhere_hits = redirecting
    args = ["--model", "m"] if model else []
    proc = subprocess.run([*EDGEGW, "loadtest", url, *args, "--users", "2", "--duration", "1s",
                           "--report", str(tmp_path)], cwd=ROOT, env={**os.environ, "EDGEGW_LOADTEST_TOKEN": "t"},
                          capture_output=True, text=True, timeout=60)
    assert front_hits, proc.stderr
    assert elsewhere_hits == [], (elsewhere_hits[:3], proc.stderr[-500:])
    if model:
        summary = json.loads((tmp_path / "result.json").read_text())["summary"]
        assert summary["errors_by_status_code"] and all(k.startswith("307") for k in summary["errors_by_status_code"])
    else:
        assert proc.returncode != 0 and "307" in proc.stderr, proc.stderr
