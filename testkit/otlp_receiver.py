"""A real OTLP/HTTP traces endpoint for the tests: decodes each POSTed protobuf
`ExportTraceServiceRequest` with the maintained `opentelemetry-proto` package and keeps the spans.

`mode` injects the collector faults the gateway must survive: "ok", "error" (500 to every export) and
"slow" (holds each export `delay_s` before answering)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]
    start_ns: int
    end_ns: int
    status_code: int


def _value(v: Any) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, which) if which else None


@dataclass
class OtlpReceiver:
    mode: str = "ok"
    delay_s: float = 5.0
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    content_types: set[str] = field(default_factory=set)

    def start(self) -> OtlpReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the http.server interface
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                receiver.requests += 1
                receiver.content_types.add(self.headers.get("content-type", ""))
                if receiver.mode == "slow":
                    time.sleep(receiver.delay_s)
                if receiver.mode == "error" or self.path != "/v1/traces":
                    self.send_response(500 if receiver.mode == "error" else 404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                receiver.add(ExportTraceServiceRequest.FromString(body))
                out = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # an exporter that gave up on a slow answer closed its end: expected here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def add(self, request: ExportTraceServiceRequest) -> None:
        with self._lock:
            for rs in request.resource_spans:
                service = next((_value(a.value) for a in rs.resource.attributes if a.key == "service.name"), "")
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.spans.append(ReceivedSpan(
                            service, s.name, s.trace_id.hex(), s.span_id.hex(), s.parent_span_id.hex(), s.kind,
                            {a.key: _value(a.value) for a in s.attributes}, s.start_time_unix_nano,
                            s.end_time_unix_nano, s.status.code))

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def wait_for(self, predicate: Any, timeout: float = 15.0) -> list[ReceivedSpan]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = [s for s in self.spans if predicate(s)]
            if found:
                return found
            time.sleep(0.05)
        raise TimeoutError(f"no matching span after {timeout}s; have {[s.name for s in self.spans]}")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
