"""SIGHUP with several workers: uvicorn's supervisor would restart every worker (losing pool health,
limiter windows and cache entries); instead it is passed on, and each worker reloads its policy."""

from __future__ import annotations

import logging
import os
import signal

log = logging.getLogger("edgegw.policy")


def forward_sighup_to_workers() -> None:
    from uvicorn.supervisors.multiprocess import Multiprocess

    def handle_hup(self: Multiprocess) -> None:
        log.info("SIGHUP: workers reload the policy file")
        for process in self.processes:
            pid = process.pid
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGHUP)
                except ProcessLookupError:
                    pass

    Multiprocess.handle_hup = handle_hup  # type: ignore[method-assign]
