"""Shared helpers for the bench scripts: processes on loopback and a wrk-driven load run."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edgecore.progress import step  # noqa: E402
from testkit.harness import EDGEGW, Proc, free_port, start_server  # noqa: E402

__all__ = ["EDGEGW", "ROOT", "LoadResult", "Proc", "cpu_seconds", "free_port", "instructions_per_request",
           "print_table", "start_server", "wrk"]

_WRK_SCRIPT = """
wrk.method = "POST"
%(body)s
wrk.headers["content-type"] = "%(content_type)s"
%(headers)s
overheads = {}
n = 0
local threads = {}
setup = function(thread) table.insert(threads, thread) end
response = function(status, headers, body)
  local v = headers["x-edgegw-overhead-ms"]
  if v ~= nil and n < 100000 then n = n + 1; overheads[n] = tonumber(v) end
end
done = function(summary, latency, requests)
  local p50, p99 = -1, -1
  overheads = {}
  n = 0
  for _, t in ipairs(threads) do
    for _, v in ipairs(t:get("overheads")) do n = n + 1; overheads[n] = v end
  end
  if n > 0 then
    table.sort(overheads)
    p50 = overheads[math.max(1, math.floor(n * 0.50))]
    p99 = overheads[math.max(1, math.floor(n * 0.99))]
  end
  io.write(string.format("RESULT %%d %%d %%f %%f %%f %%f %%d\\n", summary.requests, summary.duration,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, p50, p99,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
"""


def cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and its children (uvicorn workers), from /proc."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def _children(pid: int) -> list[int]:
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    out = [int(k) for k in kids]
    for k in list(out):
        out += _children(k)
    return out


@dataclass
class LoadResult:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    overhead_p50_ms: float | None
    overhead_p99_ms: float | None
    errors: int
    cpu_us_per_request: float | None = None


def wrk(name: str, url: str, body: dict | bytes, headers: dict[str, str] | None = None, *, seconds: int = 8,
        connections: int = 32, threads: int = 1, cpu_pid: int | None = None,
        content_type: str = "application/json") -> LoadResult:
    """Run wrk against `url` with a POST body (a dict sent as JSON, or bytes sent as they are, with
    `content_type`); needs Debian's wrk (apt-get install wrk)."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    hdrs = "\n".join(f'wrk.headers["{k}"] = "{v}"' for k, v in (headers or {}).items())
    if isinstance(body, bytes):  # binary bodies (MessagePack) are read from a file: no Lua quoting
        with tempfile.NamedTemporaryFile("wb", suffix=".body", delete=False) as raw:
            raw.write(body)
        body_lua = f'local f = io.open("{raw.name}", "rb"); wrk.body = f:read("*a"); f:close()'
    else:
        body_lua = f"wrk.body = [[{json.dumps(body)}]]"
    script = _WRK_SCRIPT % {"body": body_lua, "headers": hdrs, "content_type": content_type}
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    cpu_before = cpu_seconds(cpu_pid) if cpu_pid else 0.0
    with step(f"measuring {name} ({seconds}s, {connections} connections)"):
        out = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "-s",
                              f.name, url], capture_output=True, text=True, check=True).stdout
    match = re.search(r"RESULT (\d+) (\d+) ([\d.]+) ([\d.]+) ([-\d.]+) ([-\d.]+) (\d+)", out)
    if not match:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    reqs, dur_us, p50, p99, o50, o99, errors = match.groups()
    cpu = (cpu_seconds(cpu_pid) - cpu_before) / int(reqs) * 1e6 if cpu_pid and int(reqs) else None
    return LoadResult(name, int(reqs) / (int(dur_us) / 1e6), float(p50), float(p99),
                      float(o50) if float(o50) >= 0 else None, float(o99) if float(o99) >= 0 else None,
                      int(errors), cpu)


def print_table(title: str, rows: list[LoadResult], baseline: LoadResult) -> None:
    print(f"\n{title}")
    print(f"{'target':<34}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'vs base':>9}"
          f"{'ovh p50':>10}{'ovh p99':>10}{'cpu us/req':>12}{'errors':>8}")
    for r in rows:
        o50 = f"{r.overhead_p50_ms:.3f}" if r.overhead_p50_ms is not None else "-"
        o99 = f"{r.overhead_p99_ms:.3f}" if r.overhead_p99_ms is not None else "-"
        cpu = f"{r.cpu_us_per_request:.0f}" if r.cpu_us_per_request is not None else "-"
        print(f"{r.name:<34}{r.rps:>10.0f}{r.p50_ms:>10.2f}{r.p99_ms:>10.2f}{r.rps / baseline.rps:>9.2f}"
              f"{o50:>10}{o99:>10}{cpu:>12}{r.errors:>8}")


def instructions_per_request(name: str, args: list[str], ready_url: str, url: str, body: dict | bytes,
                             headers: dict[str, str], *, seconds: int = 10, connections: int = 8,
                             env: dict[str, str] | None = None, content_type: str = "application/json") -> float:
    """CPU instructions per request of a one-process server under callgrind (needs valgrind): unlike
    req/s and CPU time not moved by other load on the machine, but blind to cache misses and the kernel.
    Counting starts after a warm-up, so start-up and first-request costs are left out."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed: apt-get install -y valgrind")
    out = Path(tempfile.mkdtemp(prefix="edgegw-callgrind-")) / "out"
    proc = Proc(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", *args],
                name=f"{name}-callgrind", env=env)
    try:
        proc.wait_http(ready_url, timeout=300)
        wrk(f"warm-up {name} (callgrind)", url, body, headers, seconds=5, connections=connections,
            content_type=content_type)
        subprocess.run(["callgrind_control", "-i", "on", str(proc.popen.pid)], capture_output=True, check=True)
        result = wrk(f"{name} (callgrind)", url, body, headers, seconds=seconds, connections=connections,
                     content_type=content_type)
        subprocess.run(["callgrind_control", "-d", str(proc.popen.pid)], capture_output=True, check=True)
    finally:
        proc.stop()
    dump = Path(f"{out}.1").read_text()
    total = int(re.search(r"^(?:totals|summary): (\d+)", dump, re.M).group(1))  # type: ignore[union-attr]
    return total / (result.rps * seconds)
