"""Run one backend process under uvicorn, with a graceful drain on SIGTERM/SIGINT.

On the first signal the backend reports "draining" (/healthz 503, new requests 503 so the gateway goes
elsewhere), waits for in-flight requests to finish (up to --drain-timeout), then lets uvicorn exit.
A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import uvicorn

from gpu_backend.state import BackendOptions, BackendState

log = logging.getLogger("edgegw.backend")


class DrainingServer(uvicorn.Server):
    """uvicorn.Server whose exit signal drains in-flight work first."""

    def __init__(self, config: uvicorn.Config, state: BackendState) -> None:
        super().__init__(config)
        self.state = state
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: Any = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: Any) -> None:
        if self.state.status == "draining" or self._loop is None:
            return super().handle_exit(sig, frame)
        previous, self.state.status = self.state.status, "draining"
        log.info("signal %s: draining %d in-flight request(s) (was %s)", sig, self.state.inflight, previous)
        # Signal handlers may interrupt the loop anywhere; only call_soon_threadsafe is safe here.
        self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._drain()))

    async def _drain(self) -> None:
        deadline = time.monotonic() + self.state.options.drain_timeout_s
        while time.monotonic() < deadline:
            busy = self.state.inflight + (self.state.engine.outstanding if self.state.engine else 0)
            if busy == 0:
                break
            await asyncio.sleep(0.05)
        else:
            log.warning("drain timeout: exiting with %d request(s) in flight", self.state.inflight)
        self.should_exit = True


def serve(options: BackendOptions, host: str, port: int, log_level: str = "warning") -> int:
    """Serve until signalled. Returns the process exit code."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("edgegw.backend").setLevel(logging.INFO)  # our life-cycle lines; libraries stay at WARNING
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    from gpu_backend.api import create_app

    state = BackendState(options)
    config = uvicorn.Config(create_app(state), host=host, port=port, log_level=log_level, access_log=False,
                            lifespan="on", timeout_keep_alive=30)
    server = DrainingServer(config, state)
    state.on_failed = lambda: setattr(server, "should_exit", True)
    server.run()
    return 1 if state.status == "failed" else 0
