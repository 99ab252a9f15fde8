"""SIGHUP with several workers: uvicorn's supervisor would restart every worker (losing pool health,
limiter windows and cache entries); ours passes it on instead, and each worker reloads its policy."""

from __future__ import annotations

import logging
import os
import signal

from uvicorn.supervisors.multiprocess import Multiprocess

log = logging.getLogger("edgegw.policy")


class ReloadingMultiprocess(Multiprocess):
    """uvicorn's multi-process supervisor, with SIGHUP forwarded to the workers."""

    def handle_hup(self) -> None:
        log.info("SIGHUP: workers reload the policy file")
        for process in self.processes:
            pid = process.pid
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGHUP)
                except ProcessLookupError:
                    pass
