"""Which engine for `edgegw loadtest`: Locust (gevent) against asyncio clients (aiohttp, httpx).

Each engine runs as its own process, closed-loop with the same number of users for the same time,
against the fake backend streaming N tokens with a fixed delay between them. Printed per engine:
requests/s, the load generator's CPU per request (what limits how much load one core makes) and how
far its measured inter-token latency (ITL) and time to first token (TTFT) sit from the backend's
real schedule (what limits whether the LLM figures can be trusted). Run:
`python bench/loadtest_engine.py [--users 32] [--seconds 6] [--token-delay 0.01] [--tokens 16]`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, free_port, start_server

BODY = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}], "stream": True}

# Each client streams chat completions for `seconds` with `users` concurrent loops, timestamps each
# SSE event, and prints {"requests", "ttft_ms": [...], "itl_ms": [...]} as JSON on its last line.
_ASYNC_CLIENT = r'''
import asyncio, json, sys, time
kind, url, users, seconds, body = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
ttft, itl, done = [], [], [0]

async def user_aiohttp(session, stop):
    while time.perf_counter() < stop:
        t0 = time.perf_counter(); last = None
        async with session.post(url, data=body, headers={"content-type": "application/json"}) as r:
            async for line in r.content:
                if not line.startswith(b"data: {"): continue
                now = time.perf_counter()
                if last is None: ttft.append((now - t0) * 1e3)
                else: itl.append((now - last) * 1e3)
                last = now
        done[0] += 1

async def user_httpx(client, stop):
    while time.perf_counter() < stop:
        t0 = time.perf_counter(); last = None
        async with client.stream("POST", url, content=body, headers={"content-type": "application/json"}) as r:
            async for line in r.aiter_lines():
                if not line.startswith("data: {"): continue
                now = time.perf_counter()
                if last is None: ttft.append((now - t0) * 1e3)
                else: itl.append((now - last) * 1e3)
                last = now
        done[0] += 1

async def main():
    stop = time.perf_counter() + seconds
    cpu0 = time.process_time()
    if kind == "aiohttp":
        import aiohttp
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
            await asyncio.gather(*(user_aiohttp(s, stop) for _ in range(users)))
    else:
        import httpx
        limits = httpx.Limits(max_connections=users, max_keepalive_connections=users)
        async with httpx.AsyncClient(limits=limits, timeout=30) as c:
            await asyncio.gather(*(user_httpx(c, stop) for _ in range(users)))
    print(json.dumps({"requests": done[0], "ttft_ms": ttft, "itl_ms": itl, "run_cpu_s": time.process_time() - cpu0}))

try:
    import uvloop; uvloop.install()
except ImportError:
    pass
asyncio.run(main())
'''

_LOCUSTFILE = r'''
import json, os, time
from locust import FastHttpUser, HttpUser, constant, events, task
BODY = os.environ["BENCH_BODY"]
OUT = os.environ["BENCH_OUT"]
ttft, itl = [], []

def _stream(lines, t0):
    last = None
    for line in lines:
        line = line if isinstance(line, bytes) else line.encode()
        if not line.startswith(b"data: {"): continue
        now = time.perf_counter()
        if last is None: ttft.append((now - t0) * 1e3)
        else: itl.append((now - last) * 1e3)
        last = now

if os.environ["BENCH_KIND"] == "locust-fast":
    class U(FastHttpUser):
        wait_time = constant(0)
        @task
        def chat(self):
            t0 = time.perf_counter()
            with self.client.post("/v1/chat/completions", data=BODY, stream=True,
                                  headers={"content-type": "application/json"}) as r:
                buf = b""
                for chunk in r.stream:
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    _stream(lines, t0)
else:
    class U(HttpUser):
        wait_time = constant(0)
        @task
        def chat(self):
            t0 = time.perf_counter()
            r = self.client.post("/v1/chat/completions", data=BODY, stream=True,
                                 headers={"content-type": "application/json"})
            _stream(r.iter_lines(), t0)
            r.close()

cpu = {}

@events.test_start.add_listener
def _start(environment, **kw):
    cpu["start"] = time.process_time()

@events.test_stop.add_listener
def _stop(environment, **kw):
    cpu["stop"] = time.process_time()

@events.quitting.add_listener
def _dump(environment, **kw):
    with open(OUT, "w") as f:
        json.dump({"requests": environment.stats.total.num_requests, "ttft_ms": ttft, "itl_ms": itl,
                   "run_cpu_s": cpu["stop"] - cpu["start"]}, f)
'''


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _run(kind: str, url: str, users: int, seconds: float, tmp: Path) -> dict:
    body = json.dumps(BODY)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    if kind.startswith("locust"):
        out = tmp / f"{kind}.json"
        (tmp / "locustfile.py").write_text(_LOCUSTFILE)
        env = {**os.environ, "BENCH_BODY": body, "BENCH_OUT": str(out), "BENCH_KIND": kind}
        proc = subprocess.run([str(Path(sys.executable).parent / "locust"), "-f", str(tmp / "locustfile.py"),
                        "--headless", "-u", str(users), "-r", str(users * 100), "-t", f"{int(seconds)}s", "-H", url,
                        "--only-summary", "--loglevel", "ERROR", "--stop-timeout", "5"],
                       env=env, check=False, capture_output=True, text=True)
        if not out.exists():
            raise RuntimeError(f"{kind} failed: {proc.stderr[-3000:]}")
        result = json.loads(out.read_text())
    elif kind == "edgegw":  # the finished tool itself, reports included (no in-run CPU figure)
        out = tmp / "edgegw-report"
        subprocess.run([sys.executable, "-m", "gateway.cli", "loadtest", url, "--model", "fake-model", "--users",
                        str(users), "--duration", f"{seconds}s", "--stream", "--max-tokens", str(BODY["max_tokens"]),
                        "--quiet", "--report", str(out)], cwd=ROOT, check=True, capture_output=True)
        data = json.loads((out / "result.json").read_text())
        s = data["summary"]
        result = {"requests": s["ok"], "ttft_ms": [], "itl_ms": [], "run_cpu_s": float("nan"),
                  "itl_p50": s["itl_s"]["p50"] * 1e3, "itl_p99": s["itl_s"]["p99"] * 1e3,
                  "ttft_p50": s["ttft_s"]["p50"] * 1e3}
    else:
        proc = subprocess.run([sys.executable, "-c", _ASYNC_CLIENT, kind, url + "/v1/chat/completions",
                               str(users), str(seconds), body], check=True, capture_output=True, text=True)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result.update(kind=kind, wall_s=wall, cpu_s=cpu)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=6)
    parser.add_argument("--token-delay", type=float, default=0.01)
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--engines", default="aiohttp,httpx,locust-fast,locust,edgegw")
    args = parser.parse_args()
    BODY["max_tokens"] = args.tokens
    port = free_port()
    backend = start_server([sys.executable, "-m", "testkit.fakes.backend", "--port", str(port),
                            "--token-delay", str(args.token_delay)], f"http://127.0.0.1:{port}/healthz",
                           name="fake-backend")
    tmp = Path(tempfile.mkdtemp(prefix="edgegw-bench-engine-"))
    rows = []
    try:
        for kind in args.engines.split(","):
            if kind.startswith("locust") and shutil.which("locust", path=str(Path(sys.executable).parent)) is None:
                print(f"skipping {kind}: locust is not installed (pip install locust)")
                continue
            rows.append(_run(kind, f"http://127.0.0.1:{port}", args.users, args.seconds, tmp))
    finally:
        backend.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    true_itl = args.token_delay * 1e3
    print(f"\nEngines: {args.users} users, {args.seconds:g}s, {args.tokens} tokens/stream, backend ITL "
          f"{true_itl:g} ms (cwd {ROOT.name}; backend shares the cores)")
    print(f"{'engine':<12} {'req/s':>7} {'cpu ms/req':>10} {'ratio':>6} {'+start-up':>9} {'ITL p50':>8} {'ITL p99':>8} "
          f"{'ITL err p50':>11} {'TTFT p50':>9}")
    base = None
    for r in rows:
        per_req = r["run_cpu_s"] * 1e3 / max(1, r["requests"])
        total = r["cpu_s"] * 1e3 / max(1, r["requests"])
        base = base or per_req  # the first engine listed is the baseline
        itl50, itl99 = r.get("itl_p50", _pct(r["itl_ms"], 0.5)), r.get("itl_p99", _pct(r["itl_ms"], 0.99))
        print(f"{r['kind']:<12} {r['requests'] / args.seconds:>7.0f} {per_req:>10.2f} {per_req / base:>6.2f} {total:>9.2f} "
              f"{itl50:>8.2f} {itl99:>8.2f} {itl50 - true_itl:>+11.2f} {r.get('ttft_p50', _pct(r['ttft_ms'], 0.5)):>9.2f}")
    print("cpu ms/req: the engine's CPU while the load ran, per completed stream (ratio vs the first row);"
          " +start-up: the whole process's CPU per stream, imports included")


if __name__ == "__main__":
    main()
