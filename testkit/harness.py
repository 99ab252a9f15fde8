"""Start real processes on loopback for tests: servers on free ports, a private redis-server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
EDGEGW = [PYTHON, "-m", "gateway.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> int:
    """The first of `n` consecutive free ports (for servers that take a base port and count up)."""
    for _ in range(100):
        base = free_port()
        if base + n > 65536:
            continue
        sockets: list[socket.socket] = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports found")


class Proc:
    """A child process whose output goes to a log file (shown when a test fails to start it)."""

    def __init__(self, args: list[str], *, env: dict[str, str] | None = None, name: str = "proc",
                 cwd: str | Path | None = None) -> None:
        self.args = args
        self.name = name
        self.log_path = Path(tempfile.mkstemp(prefix=f"edgegw-{name}-", suffix=".log")[1])
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - lives as long as the process
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.popen = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, env=full_env,
                                      cwd=str(cwd or ROOT), start_new_session=True)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_http(self, url: str, timeout: float = 60.0, status: int = 200) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.log()[-4000:]}")
            try:
                if httpx.get(url, timeout=1.0).status_code == status:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready at {url} after {timeout}s:\n{self.log()[-4000:]}")

    def signal(self, sig: int) -> None:
        if self.alive():
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()
        return self.popen.returncode


class RedisServer:
    """A private redis-server on a free port, no persistence; can be killed and restarted."""

    def __init__(self, port: int | None = None, password: str | None = None) -> None:
        self.port = port or free_port()
        self.password = password
        self.proc: Proc | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed (.ci/run installs it)")
        args = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = Proc(args, name="redis")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        raise TimeoutError(f"redis-server did not start:\n{self.proc.log()}")

    def stop(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc = None


def start_server(args: list[str], ready_url: str, *, name: str, env: dict[str, str] | None = None,
                 timeout: float = 60.0) -> Proc:
    """Start a server process and wait until `ready_url` answers 200."""
    proc = Proc(args, env=env, name=name)
    try:
        proc.wait_http(ready_url, timeout=timeout)
    except Exception:
        proc.stop()
        raise
    return proc
