"""The listener's own cost per request: uvicorn's httptools protocol against the edge protocol.

Both protocols are driven in this process, on uvloop, with the same keep-alive connection (an
in-memory transport), the same request bytes and the same trivial ASGI app, in interleaved blocks;
the figure is this process's CPU time per request, so other load on the machine moves it little.
What is measured is everything between the bytes arriving and the response bytes being written:
parsing, the limits' bookkeeping, the ASGI cycle. Run: `python bench/listener_overhead.py`.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import uvloop
from _common import ROOT  # noqa: F401 - puts the repository on sys.path
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from gateway.serving.protocol import EdgeHttpProtocol

REQUEST = (b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: bench\r\n"
           b"Content-Type: application/json\r\nAuthorization: Bearer " + b"x" * 200 + b"\r\n"
           b"Content-Length: 55\r\n\r\n" + b'{"model": "fake-model", "prompt": "hello", "max_tokens": 4}'[:55])
BODY = b'{"id":"cmpl-1","object":"text_completion","choices":[{"text":"tok0"}]}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})


class Transport(asyncio.Transport):
    """Keeps the connection open and counts what the protocol writes."""

    def __init__(self) -> None:
        super().__init__()
        self.responses = 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8080), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def write(self, data: bytes) -> None:  # type: ignore[override]
        if data.startswith(b"HTTP/1.1 200"):
            self.responses += 1

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def cpu_us_per_request(protocol_class: type, requests: int) -> float:
    config = Config(app, http=protocol_class, lifespan="off", log_level="warning", access_log=False)
    config.load()
    proto = protocol_class(config=config, server_state=ServerState(), app_state={})
    transport = Transport()
    proto.connection_made(transport)
    started = time.process_time()
    for _ in range(requests):
        proto.data_received(REQUEST)
        while proto.cycle is not None and not proto.cycle.response_complete:
            await asyncio.sleep(0)
    elapsed = time.process_time() - started
    assert transport.responses == requests, transport.responses
    proto.connection_lost(None)
    return elapsed / requests * 1e6


async def run(rounds: int, requests: int) -> None:
    results: dict[str, list[float]] = {"uvicorn httptools": [], "edge protocol": []}
    classes = {"uvicorn httptools": HttpToolsProtocol, "edge protocol": EdgeHttpProtocol}
    for cls in classes.values():  # warm-up
        await cpu_us_per_request(cls, requests // 5)
    for _ in range(rounds):
        for name, cls in classes.items():
            results[name].append(await cpu_us_per_request(cls, requests))
    base = statistics.median(results["uvicorn httptools"])
    print(f"\nListener CPU per request ({rounds} interleaved rounds of {requests} keep-alive requests, "
          "trivial app, uvloop)")
    print(f"{'protocol':<20}{'median us':>11}{'min us':>9}{'ratio':>8}")
    for name, values in results.items():
        med = statistics.median(values)
        print(f"{name:<20}{med:>11.2f}{min(values):>9.2f}{med / base:>8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    uvloop.run(run(args.rounds, args.requests))


if __name__ == "__main__":
    main()
